/**
 * The emulator commands from an app that installed flame-ts' npm package, far
 * from this repository. `npx flame-ts fly-emulator`: the package must bring
 * Fly's spec with it. `npx flame-ts k8s-emulator`: a KubernetesBackend pool of
 * the app must run a call in its pods (the backend's lazily loaded yaml and
 * undici, the default runner command and the pinned TLS channel, all from the
 * installed package). Without their optional peers (ajv, kubernetes-models)
 * both commands must say how to go on in their own words (--no-validate, not
 * the API's validate: false).
 *
 * One app, one install, for every test: installs are the slowest part of the
 * suite. The app starts without optional peers; the last test installs ajv.
 *
 * The package is built and packed as test/support/packed-package.ts does.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFlyEmulator } from "../../src/emulators/fly/emulator.js";
import { resolveSpecPath, SPEC_ENV_VAR } from "../../src/emulators/fly/openapi.js";
import { descendantPids, isAlive, onPath, waitFor } from "../support/processes.js";
import { appEnvironment, appWithPackage, BUILD_TIMEOUT, INSTALL_TIMEOUT, REPO, registryReachable, run } from "../support/packed-package.js";

const SPEC_IN_PACKAGE = "spec/fly/machines-openapi.json";
const TOKEN = "packaged-emulator-token";
const APP = "flame-emulated";

const registry = await registryReachable("the packaged emulators' install tests");
const kubectlOnPath = onPath("kubectl");

/**
 * An app module with a KubernetesBackend pool: its runners run it too (it is
 * the pool's entry), where isRunner() keeps it from calling. The parent runs outside any pod (parentPod: false, an image
 * named) and listens on loopback, where the emulator's pods, local
 * processes, reach it.
 */
const K8S_APP = `
import { fileURLToPath } from "node:url";
import { isRunner, KubernetesBackend, Pool } from "flame-ts";
const backend = new KubernetesBackend({
  kubeconfig: process.env.KUBECONFIG,
  parentPod: false,
  image: "registry.example.com/app:1",
  controlPlane: { host: "127.0.0.1", port: 0, advertisedHost: "127.0.0.1" },
});
export const pool = new Pool({ name: "k8s-app", max: 1, log: "warn", backend, entry: fileURLToPath(import.meta.url) });
export const add = pool.define("add", (a, b) => a + b);
if (!isRunner()) {
  console.log(JSON.stringify({ sum: await add(2, 3) }));
  await pool.stop();
}
`;

/** The files `npm pack` would put in the package, without building or writing anything. */
async function packedFileList(): Promise<string[]> {
  const output = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], REPO, 60_000);
  const [pack] = JSON.parse(output) as Array<{ files: Array<{ path: string }> }>;
  return pack!.files.map((file) => file.path);
}

/** A started `npx flame-ts <command>` and everything it prints. */
interface EmulatorCommand {
  name: string;
  child: ChildProcess;
  output: () => string;
}

/** Starts `npx flame-ts <command> ...args` in `app`, in its own process group so stopping it reaches npx's children too. */
function startEmulatorCommand(app: string, command: string, args: string[]): EmulatorCommand {
  const child = spawn("npx", ["--no", "flame-ts", command, ...args], {
    cwd: app,
    env: appEnvironment(),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  return { name: command, child, output: () => output };
}

/** `npx flame-ts fly-emulator` on any free port, with the tests' token. */
function startFlyEmulatorCommand(app: string, args: string[]): EmulatorCommand {
  return startEmulatorCommand(app, "fly-emulator", ["--port", "0", "--token", TOKEN, "--quiet", ...args]);
}

/** Resolves with the first match of `pattern` in what the command prints; rejects with its output if it exits first. */
async function printed(command: EmulatorCommand, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  // The output only grows: once found, the match stays.
  const match = () => pattern.exec(command.output());
  await waitFor(() => {
    if (match()) return true;
    if (command.child.exitCode !== null) throw new Error(`${command.name} exited (${command.child.exitCode}) before it printed ${what}:\n${command.output()}`);
    return false;
  }, `${command.name} to print ${what}`, 30_000);
  return match()!;
}

/** Resolves with the URL the Fly emulator prints once it listens. */
async function listeningUrl(command: EmulatorCommand): Promise<string> {
  return (await printed(command, /listening on (http:\/\/127\.0\.0\.1:\d+)/, "the URL it listens on"))[1]!;
}

/** Resolves with the exit code once the command ends by itself. */
async function exitCode(command: EmulatorCommand): Promise<number> {
  await waitFor(() => command.child.exitCode !== null, `${command.name} to exit; it printed:\n${command.output()}`, 30_000);
  return command.child.exitCode!;
}

/** Whether any process of the group led by `pid` is still there. */
function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops the command's whole process group with `signal` (the emulator kills
 * its machines or pods and exits), then SIGKILL if it lingers. Resolves once
 * every process it had started is gone, with "killed" if SIGKILL was needed;
 * rejects, after killing them, if any outlived it.
 */
async function stopEmulatorCommand(command: EmulatorCommand, signal: NodeJS.Signals = "SIGTERM"): Promise<"stopped" | "killed"> {
  const pid = command.child.pid!;
  if (!groupAlive(pid)) return "stopped";
  // Machines and pods run in process groups of their own, and one that outlives the emulator leaves the test's
  // process tree: note them now to see them after.
  const started = descendantPids(pid);
  const exited = command.child.exitCode === null && command.child.signalCode === null ? once(command.child, "exit") : Promise.resolve();
  let outcome: "stopped" | "killed" = "stopped";
  process.kill(-pid, signal);
  await waitFor(() => !groupAlive(pid), `${command.name}'s processes to exit`, 10_000).catch(() => {
    if (!groupAlive(pid)) return;
    outcome = "killed";
    process.kill(-pid, "SIGKILL");
  });
  await exited;
  await waitFor(() => !groupAlive(pid), `${command.name}'s processes to die`, 5_000);
  await waitFor(() => !started.some(isAlive), `the processes ${command.name} started to exit`, 5_000).catch((error: unknown) => {
    const left = started.filter(isAlive);
    for (const leftover of left) process.kill(leftover, "SIGKILL");
    throw new Error(`${command.name} left processes behind (${left.join(", ")}), now killed`, { cause: error });
  });
  return outcome;
}

/** A request to the Machines API of an emulator at `url`. */
async function machinesApi(url: string, method: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${url}/v1/apps/${APP}/machines`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: await response.json() };
}

/** A create-machine body the spec refuses: guest.cpus is an integer in Fly's spec. */
const INVALID_CREATE = { config: { image: "registry.fly.io/flame-emulated:deployment-test", guest: { cpus: "two" } } };

/**
 * Runs kubectl against the emulator `kubeconfig` points at, with a HOME (and
 * cache) under `app`, so nothing is written under the real home; resolves with
 * what it printed on stdout and stderr ("No resources found" goes to stderr).
 */
async function kubectl(app: string, kubeconfig: string, args: string[]): Promise<string> {
  const home = join(app, ".kubectl-home");
  const { stdout, stderr } = await promisify(execFile)("kubectl", ["--kubeconfig", kubeconfig, "--request-timeout=10s", ...args], {
    env: { PATH: process.env.PATH!, HOME: home, KUBECACHEDIR: join(home, "cache") },
    encoding: "utf8",
    timeout: 15_000,
  });
  return stdout + stderr;
}

it("the npm package ships Fly's spec and its notice", async () => {
  const files = await packedFileList();
  expect(files).toContain(SPEC_IN_PACKAGE);
  expect(files).toContain("spec/fly/README.md");
});

it("the emulator reads the repository's own copy of the spec unless told otherwise", () => {
  const saved = process.env[SPEC_ENV_VAR];
  delete process.env[SPEC_ENV_VAR];
  try {
    expect(resolveSpecPath()).toBe(join(REPO, SPEC_IN_PACKAGE));
    expect(resolveSpecPath(join(REPO, "package.json"))).toBe(join(REPO, "package.json"));
  } finally {
    if (saved !== undefined) process.env[SPEC_ENV_VAR] = saved;
  }
});

it("advice on a missing spec names the switches of the interface in use", async () => {
  const specPath = join(REPO, "spec/fly/no-such-spec.json");
  await expect(startFlyEmulator({ specPath })).rejects.toThrow(/not found at .*no-such-spec\.json: pass specPath .* or pass validate: false$/);
  await expect(startFlyEmulator({ specPath, invokedFrom: "cli" })).rejects.toThrow(/pass --spec <file> .* or pass --no-validate$/);
});

describe.skipIf(!registry)("npx flame-ts fly-emulator and k8s-emulator from an app that installed the package", () => {
  let app: string;

  beforeAll(async () => {
    // Under the system's temp directory: no flame-ts repository, ../shared or node_modules above it.
    app = await appWithPackage("uses-flame-ts");
  }, BUILD_TIMEOUT + INSTALL_TIMEOUT);

  afterAll(() => {
    if (app) rmSync(app, { recursive: true, force: true });
  });

  it("without ajv, refuses to validate and names the command's --no-validate", async () => {
    expect(existsSync(join(app, "node_modules/ajv")), "ajv is an optional peer: npm must not install it").toBe(false);
    const command = startFlyEmulatorCommand(app, []);
    try {
      expect(await exitCode(command)).not.toBe(0);
      expect(command.output()).toContain("install ajv and ajv-formats (npm install -D ajv ajv-formats) or pass --no-validate");
      expect(command.output()).not.toContain("validate: false");
    } finally {
      await stopEmulatorCommand(command);
    }
  });

  it("with --no-validate, starts without ajv and serves the Machines API", async () => {
    const command = startFlyEmulatorCommand(app, ["--no-validate"]);
    try {
      const url = await listeningUrl(command);
      expect(await machinesApi(url, "GET")).toEqual({ status: 200, body: [] });
    } finally {
      await stopEmulatorCommand(command);
    }
  });

  it("without kubernetes-models, k8s-emulator refuses to validate and names the command's --no-validate", async () => {
    expect(existsSync(join(app, "node_modules/kubernetes-models")), "kubernetes-models is an optional peer: npm must not install it").toBe(false);
    const command = startEmulatorCommand(app, "k8s-emulator", ["--port", "0", "--quiet"]);
    try {
      expect(await exitCode(command)).not.toBe(0);
      expect(command.output()).toContain("install it (npm install --save-dev kubernetes-models@4) or turn validation off with --no-validate");
      expect(command.output()).not.toContain("validate: false");
    } finally {
      await stopEmulatorCommand(command);
    }
  });

  it("with --no-validate, k8s-emulator runs the pods of the app's KubernetesBackend pool, and Ctrl-C stops it and them", async () => {
    const kubeconfig = join(app, "kubeconfig.yaml");
    writeFileSync(join(app, "k8s-app.mjs"), K8S_APP);
    // Pods run in the command's directory: the app's, where the pool's entry and node_modules are.
    const command = startEmulatorCommand(app, "k8s-emulator", ["--port", "0", "--quiet", "--no-validate", "--kubeconfig", kubeconfig]);
    try {
      expect((await printed(command, /^ {2}export KUBECONFIG=(.+)$/m, "how to point kubectl at it"))[1]).toBe(kubeconfig);

      // The backend's yaml and undici, the runner agent and the pinned TLS channel, all from the app's node_modules.
      const printedByApp = await run("node", ["k8s-app.mjs"], app, 30_000, appEnvironment({ KUBECONFIG: kubeconfig }));
      expect(JSON.parse(printedByApp)).toEqual({ sum: 5 });

      if (kubectlOnPath) {
        // The runner's pod may still be terminating: a table, or none.
        expect(await kubectl(app, kubeconfig, ["get", "pods"])).toMatch(/^No resources found|^NAME\s+READY\s+STATUS/);
        // A pod still running at Ctrl-C, which must go with the command.
        const leftover = ["run", "leftover", "--image=registry.example.com/app:1", "--restart=Never", "--command", "--", process.execPath, "-e", "setInterval(() => {}, 1000)"];
        await kubectl(app, kubeconfig, leftover);
        await kubectl(app, kubeconfig, ["wait", "--for=condition=Ready", "pod/leftover", "--timeout=10s"]);
      } else {
        expect(process.env.FLAME_REQUIRE_KUBECTL, "FLAME_REQUIRE_KUBECTL is set but kubectl is not on PATH (apt-get install kubernetes-client)").not.toBe("1");
      }

      // What Ctrl-C in a terminal does. npx dies of the signal; the emulator under it closes and exits by itself.
      expect(await stopEmulatorCommand(command, "SIGINT"), `k8s-emulator needed SIGKILL; it printed:\n${command.output()}`).toBe("stopped");
    } finally {
      await stopEmulatorCommand(command);
    }
  });

  it(
    "once ajv is installed, validates against the spec shipped in the package",
    async () => {
      await run("npm", ["install", "ajv", "ajv-formats", "--no-audit", "--no-fund", "--prefer-offline"], app, INSTALL_TIMEOUT);
      const packagedSpec = join(app, "node_modules/flame-ts", SPEC_IN_PACKAGE);

      const command = startFlyEmulatorCommand(app, []);
      try {
        const url = await listeningUrl(command);
        expect(await machinesApi(url, "GET")).toEqual({ status: 200, body: [] });
        const refused = await machinesApi(url, "POST", INVALID_CREATE);
        expect(refused.status).toBe(400);
        expect(refused.body.error).toMatch(/^request does not match Fly's OpenAPI spec: .*\/config\/guest\/cpus must be integer/);
      } finally {
        await stopEmulatorCommand(command);
      }

      // The spec it used is the package's own: without it, the command says so, in its own words.
      renameSync(packagedSpec, `${packagedSpec}.moved`);
      const withoutSpec = startFlyEmulatorCommand(app, []);
      try {
        expect(await exitCode(withoutSpec)).not.toBe(0);
        expect(withoutSpec.output()).toContain(`spec was not found at ${packagedSpec}`);
        expect(withoutSpec.output()).toMatch(/pass --spec <file> .* or pass --no-validate/);
      } finally {
        await stopEmulatorCommand(withoutSpec);
        renameSync(`${packagedSpec}.moved`, packagedSpec);
      }
    },
    INSTALL_TIMEOUT + 60_000,
  );
});
