/**
 * Plays EC2's hypervisor for moto, which records instances but runs nothing.
 * It watches DescribeInstances; for each new running instance it reads the
 * user data (DescribeInstanceAttribute) and runs it with bash as a local
 * process, the way cloud-init would at first boot; when the instance is
 * terminated or stopped in moto it kills that process group (the machine is
 * gone); when the script powers off, it applies the instance's
 * InstanceInitiatedShutdownBehavior (TerminateInstances or StopInstances).
 *
 * The script runs unchanged. What a machine image would provide comes from
 * small commands on the script's PATH:
 * - `docker run` starts the local runner agent (from the suite's JavaScript
 *   copy of the sources, test/support/mirror-runner.mjs) with the variables
 *   passed by `-e` (the entry comes from FLAME_ENTRY), and records its
 *   arguments for assertions;
 * - `systemctl` succeeds (there is no Docker daemon to start);
 * - `poweroff` / `shutdown` mark the machine as powered off;
 * - `aws`: the real AWS CLI pointed at moto (AWS_ENDPOINT_URL) when installed,
 *   else a stand-in written with the AWS SDK that implements the calls boot
 *   scripts make (ssm get-parameter / delete-parameter, ecr get-login-password).
 * The instance's "role" credentials come through the environment, as IMDS
 * would serve them.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DescribeInstanceAttributeCommand,
  EC2Client,
  paginateDescribeInstances,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import { MOTO_CREDENTIALS, MOTO_POLL, MOTO_REGION } from "./moto.js";
import { onPath, waitFor } from "./processes.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
const OUTPUT_TAIL = 8_192;

export interface InstanceInfo {
  instanceId: string;
  tags: Record<string, string>;
}

export interface HypervisorOptions {
  endpoint: string;
  /** Milliseconds between DescribeInstances polls. Default MOTO_POLL (100). */
  pollInterval?: number;
  /**
   * Awaited before an instance "boots" (runs its user data). Resolve false to
   * leave it hung forever, e.g. to test boot timeouts. Default: boot at once.
   */
  gate?: (instance: InstanceInfo) => Promise<boolean> | boolean;
  /** Use the stand-in `aws` even when the AWS CLI is installed. */
  forceAwsStandIn?: boolean;
}

/** One instance as the hypervisor runs it. */
export interface Machine extends InstanceInfo {
  /** The decoded user data. */
  userData: string;
  /** When the hypervisor saw the instance running, and when its script started (ms since epoch). */
  seenAt: number;
  startedAt: number | undefined;
  process: ChildProcess | undefined;
  /** Set when the script ended: its exit code, or a signal name. */
  exit: string | undefined;
  /** Whether the script powered the machine off. */
  poweredOff: boolean;
  /** Whether EC2 no longer runs the instance (terminated, stopped). */
  ended: boolean;
  /** Whether the instance was ended from outside (TerminateInstances) while its script ran. */
  killed: boolean;
  /** Last bytes the script (and the runner in it) wrote. */
  output: string;
  /** Argument lists the script passed to `docker run`. */
  dockerRuns(): string[][];
  directory: string;
}

export class Ec2Hypervisor {
  readonly machines = new Map<string, Machine>();
  /** Which `aws` command boot scripts get. */
  readonly awsCli: "real" | "stand-in";
  private readonly ec2: EC2Client;
  private readonly directory: string;
  private readonly binDirectory: string;
  private readonly exits = new Set<Promise<void>>();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private pollError: Error | undefined;

  private constructor(private readonly options: HypervisorOptions) {
    this.ec2 = new EC2Client({ region: MOTO_REGION, endpoint: options.endpoint, credentials: MOTO_CREDENTIALS });
    this.directory = mkdtempSync(join(tmpdir(), "flame-hypervisor-"));
    this.binDirectory = join(this.directory, "bin");
    const realCli = !options.forceAwsStandIn && onPath("aws");
    this.awsCli = realCli ? "real" : "stand-in";
    writeCommands(this.binDirectory, !realCli);
  }

  static start(options: HypervisorOptions): Ec2Hypervisor {
    const hypervisor = new Ec2Hypervisor(options);
    hypervisor.loop = hypervisor.run();
    return hypervisor;
  }

  /** Instances' machines whose script is running now. */
  running(): Machine[] {
    return [...this.machines.values()].filter((machine) => machine.process && machine.exit === undefined);
  }

  /** Kills every machine's processes and stops watching. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    for (const machine of this.machines.values()) kill(machine);
    await Promise.all(this.exits);
    rmSync(this.directory, { recursive: true, force: true });
    if (this.pollError) throw this.pollError;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.poll();
      } catch (error) {
        // moto is reset between tests; anything else is a real failure, reported by stop().
        if (!this.stopped) this.pollError ??= error as Error;
      }
      await new Promise((resolve) => setTimeout(resolve, this.options.pollInterval ?? MOTO_POLL));
    }
  }

  private async poll(): Promise<void> {
    // Only live instances are listed: moto's answer grows with every instance it keeps, terminated ones included,
    // and at this polling rate an unfiltered listing cost moto a third of a core. A machine missing from the
    // listing has left pending and running: stopping, stopped, shutting down or terminated.
    const live = new Set<string>();
    const filters = [{ Name: "instance-state-name", Values: ["pending", "running"] }];
    for await (const page of paginateDescribeInstances({ client: this.ec2 }, { Filters: filters })) {
      for (const instance of (page.Reservations ?? []).flatMap((reservation) => reservation.Instances ?? [])) {
        const id = instance.InstanceId!;
        live.add(id);
        if (!this.machines.has(id) && instance.State?.Name === "running") {
          const tags = Object.fromEntries((instance.Tags ?? []).map((tag) => [tag.Key!, tag.Value ?? ""]));
          const created = this.createMachine(id, tags);
          this.machines.set(id, created);
          void this.boot(created).catch((error: Error) => (this.pollError ??= error));
        }
      }
    }
    for (const [id, machine] of this.machines) {
      if (live.has(id) || machine.ended) continue;
      machine.ended = true;
      machine.killed = machine.process !== undefined && machine.exit === undefined;
      kill(machine);
    }
  }

  private createMachine(instanceId: string, tags: Record<string, string>): Machine {
    const directory = join(this.directory, instanceId);
    mkdirSync(directory);
    return {
      instanceId,
      tags,
      userData: "",
      seenAt: Date.now(),
      startedAt: undefined,
      process: undefined,
      exit: undefined,
      poweredOff: false,
      ended: false,
      killed: false,
      output: "",
      directory,
      dockerRuns: () => {
        const file = join(directory, "docker-runs.jsonl");
        return existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").map((line) => JSON.parse(line) as string[]) : [];
      },
    };
  }

  private async boot(machine: Machine): Promise<void> {
    const attribute = await this.ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: machine.instanceId, Attribute: "userData" }));
    machine.userData = Buffer.from(attribute.UserData?.Value ?? "", "base64").toString("utf8");
    if (this.options.gate && !(await this.options.gate({ instanceId: machine.instanceId, tags: machine.tags }))) return;
    if (this.stopped || machine.ended) return;
    const script = join(machine.directory, "user-data");
    writeFileSync(script, machine.userData, { mode: 0o700 });
    const child = spawn("bash", [script], {
      cwd: machine.directory,
      // A machine has nothing of the test's environment: only what its image and IMDS give.
      env: {
        PATH: `${this.binDirectory}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        HOME: machine.directory,
        LANG: "C.UTF-8",
        FLAME_MACHINE_DIRECTORY: machine.directory,
        FLAME_REPO: REPO,
        AWS_ACCESS_KEY_ID: MOTO_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: MOTO_CREDENTIALS.secretAccessKey,
        AWS_ENDPOINT_URL: this.options.endpoint,
        AWS_EC2_METADATA_DISABLED: "true",
      },
      // Its own process group: terminating the instance kills the script and everything it started.
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    machine.process = child;
    machine.startedAt = Date.now();
    const collect = (chunk: Buffer) => (machine.output = (machine.output + chunk.toString("utf8")).slice(-OUTPUT_TAIL));
    child.stdout!.on("data", collect);
    child.stderr!.on("data", collect);
    const exited = new Promise<void>((resolve) => {
      child.once("close", (code, signal) => {
        machine.exit = signal ?? String(code);
        machine.poweredOff = existsSync(join(machine.directory, "poweroff"));
        resolve();
      });
    }).then(() => (machine.poweredOff && !machine.ended ? this.powerOff(machine) : undefined));
    this.exits.add(exited);
    void exited.catch((error: Error) => (this.pollError ??= error)).finally(() => this.exits.delete(exited));
  }

  /** What EC2 does when an instance's OS powers off. */
  private async powerOff(machine: Machine): Promise<void> {
    const attribute = await this.ec2.send(
      new DescribeInstanceAttributeCommand({ InstanceId: machine.instanceId, Attribute: "instanceInitiatedShutdownBehavior" }),
    );
    const behaviour = attribute.InstanceInitiatedShutdownBehavior?.Value ?? "stop";
    const command = behaviour === "terminate"
      ? new TerminateInstancesCommand({ InstanceIds: [machine.instanceId] })
      : new StopInstancesCommand({ InstanceIds: [machine.instanceId] });
    await this.ec2.send(command as TerminateInstancesCommand);
  }
}

function kill(machine: Machine): void {
  const pid = machine.process?.pid;
  if (pid === undefined || machine.exit !== undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** Waits until no machine's script runs. */
export async function waitForNoMachines(hypervisor: Ec2Hypervisor, timeout = 10_000): Promise<void> {
  await waitFor(() => hypervisor.running().length === 0, "every machine to stop", timeout);
}

/** Writes the commands a runner image would have (see the module comment). */
function writeCommands(directory: string, awsStandIn: boolean): void {
  mkdirSync(directory, { recursive: true });
  const write = (name: string, text: string) => {
    writeFileSync(join(directory, name), text);
    chmodSync(join(directory, name), 0o755);
  };
  write("poweroff", '#!/bin/sh\ntouch "$FLAME_MACHINE_DIRECTORY/poweroff"\n');
  write("shutdown", '#!/bin/sh\ntouch "$FLAME_MACHINE_DIRECTORY/poweroff"\n');
  write("systemctl", "#!/bin/sh\nexit 0\n");
  write("docker", `#!${process.execPath}\n${DOCKER}`);
  if (awsStandIn) write("aws", `#!${process.execPath}\n${AWS_STAND_IN}`);
}

/** `docker login` and `docker run` for the runner image: the "container" is the local runner agent. */
const DOCKER = String.raw`
const { spawn } = require("node:child_process");
const { appendFileSync } = require("node:fs");
const { join } = require("node:path");
const [command, ...args] = process.argv.slice(2);
const fail = (message) => { process.stderr.write("docker (test hypervisor): " + message + "\n"); process.exit(125); };
if (command === "login") { process.stdin.resume(); process.stdin.on("end", () => process.exit(0)); return; }
if (command !== "run") fail("only run and login are supported, got " + command);
appendFileSync(join(process.env.FLAME_MACHINE_DIRECTORY, "docker-runs.jsonl"), JSON.stringify(args) + "\n");
const env = { PATH: process.env.PATH, HOME: process.env.HOME };
let network, image;
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (arg === "--rm" || arg === "--init") continue;
  if (arg === "--network" || arg === "--name") { if (arg === "--network") network = args[i + 1]; i++; continue; }
  if (arg === "-e" || arg === "--env") {
    const spec = args[++i];
    const eq = spec.indexOf("=");
    const name = eq === -1 ? spec : spec.slice(0, eq);
    const value = eq === -1 ? process.env[name] : spec.slice(eq + 1);
    if (value !== undefined) env[name] = value;
    continue;
  }
  if (arg.startsWith("-")) fail("unsupported option " + arg);
  image = arg;
  if (i !== args.length - 1) fail("commands after the image are not supported");
}
if (!image) fail("no image");
if (network !== "host") fail("runners need --network host to reach the parent's address");
const repo = process.env.FLAME_REPO;
// The suite's JavaScript copy of the agent (test/support/backends.ts), which finds the app in FLAME_ENTRY.
const child = spawn(process.execPath, ["--enable-source-maps", join(repo, "test/support/mirror-runner.mjs"), join(repo, "src/runner-agent/main.ts")], { cwd: repo, env, stdio: "inherit" });
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? 128));
`;

/** The AWS CLI calls boot scripts make, for machines without the AWS CLI. */
const AWS_STAND_IN = String.raw`
const { createRequire } = require("node:module");
const { join } = require("node:path");
const requireFromRepo = createRequire(join(process.env.FLAME_REPO, "package.json"));
const args = process.argv.slice(2);
const option = (name) => { const i = args.indexOf(name); return i === -1 ? undefined : args[i + 1]; };
const fail = (message) => { process.stderr.write("aws (test stand-in): " + message + "\n"); process.exit(255); };
const [service, operation] = args.filter((arg, i) => !arg.startsWith("--") && !(args[i - 1] || "").startsWith("--"));
const region = option("--region") || fail("--region is required");
(async () => {
  if (service === "ecr" && operation === "get-login-password") return process.stdout.write("password\n");
  if (service !== "ssm") fail("unsupported: " + args.join(" "));
  const ssm = requireFromRepo("@aws-sdk/client-ssm");
  const client = new ssm.SSMClient({ region, endpoint: process.env.AWS_ENDPOINT_URL });
  const name = option("--name") || fail("--name is required");
  try {
    if (operation === "get-parameter") {
      if (option("--query") !== "Parameter.Value" || option("--output") !== "text") fail("expected --query Parameter.Value --output text");
      const output = await client.send(new ssm.GetParameterCommand({ Name: name, WithDecryption: args.includes("--with-decryption") }));
      process.stdout.write(output.Parameter.Value + "\n");
    } else if (operation === "delete-parameter") {
      await client.send(new ssm.DeleteParameterCommand({ Name: name }));
    } else fail("unsupported: " + args.join(" "));
  } catch (error) {
    process.stderr.write("An error occurred (" + error.name + "): " + error.message + "\n");
    process.exit(254);
  }
})();
`;
