/**
 * The EC2 backend: its options and boot script, then the real thing against
 * moto, with the test hypervisor running each instance's user data as local
 * processes (runners are real runner agents dialing this parent).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  EC2Client,
  type Instance,
} from "@aws-sdk/client-ec2";
import { GetParameterCommand, GetParametersByPathCommand, PutParameterCommand, SSMClient } from "@aws-sdk/client-ssm";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BackendError, BootError, InvalidOptionError, type ProvisionRequest } from "../../src/index.js";
import { Ec2Backend, type Ec2BackendOptions } from "../../src/backends/ec2.js";
import { METADATA_ENDPOINT_VAR, privateIpFromMetadata } from "../../src/backends/ec2/instance-metadata.js";
import { bootScript, ecrRegistry, shellQuote } from "../../src/backends/ec2/user-data.js";
import { decodeRunnerEnv, encodeRunnerEnv } from "../../src/protocol/runner-env.js";
import { fixtureEntry, makePool } from "../fixtures/app.js";
import { Ec2Hypervisor, waitForNoMachines } from "../support/ec2-hypervisor.js";
import { MOTO_CREDENTIALS, MOTO_INSTALL_HINT, MOTO_REGION, motoAvailability, REQUIRE_MOTO_VAR, startMoto, testEc2Backend, waitForMoto, type MotoServer } from "../support/moto.js";
import { environmentForFile } from "../support/environment.js";
import { waitFor } from "../support/processes.js";
import { fromCopy, MIRROR_EXEC_ARGV } from "../support/backends.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
const BUILD_ID = "ec2-test";
const RUNNER_IMAGE = "registry.example.com/flame-test:1";
const silent = { debug() {}, info() {}, warn() {}, error() {} };

describe("Ec2Backend options", () => {
  it("needs a way to run the runner, and names bad options and values", () => {
    expect(() => new Ec2Backend({})).toThrow(/set "runnerImage".*"runnerCommand".*"userData"/);
    expect(() => new Ec2Backend({ runnerImage: "x", subnetId: "subnet-zz" })).toThrow(InvalidOptionError);
    expect(() => new Ec2Backend({ runnerImage: "x", subnetId: "subnet-zz" })).toThrow(/option "subnetId".*subnet id/);
    expect(() => new Ec2Backend({ runnerImage: "x", imageId: "ami-0abc", imageParameter: "/p" })).toThrow(/"imageId" and "imageParameter"/);
    expect(() => new Ec2Backend({ runnerImage: "x", tags: { "flame:pool": "x" } })).toThrow(/reserved/);
    expect(() => new Ec2Backend({ runnerImage: "x", env: { "BAD-NAME": "1" } })).toThrow(/option "env/);
    expect(() => new Ec2Backend({ runnerImage: "x", tokenTransport: "env" as never })).toThrow(/option "tokenTransport"/);
    expect(() => new Ec2Backend({ runnerImage: "x", launchTemplate: { id: "lt-1", name: "n" } })).toThrow(/exactly one of id and name/);
    expect(() => new Ec2Backend({ runnerImage: "x", runnerCommand: "y" })).toThrow(/set one/);
  });

  it("listens on every interface at a fixed port by default, for the security group to name", async () => {
    const address = await new Ec2Backend({ runnerImage: "x", controlPlane: { advertisedHost: "10.1.2.3" } }).controlPlane();
    expect(address).toMatchObject({ host: "0.0.0.0", port: 3526 });
    // Over TLS pinned to the parent by default: the VPC is not trusted with the runner's token.
    expect(address.advertisedUrl(3526)).toBe("wss://10.1.2.3:3526");
    expect((await new Ec2Backend({ runnerImage: "x", controlPlane: { advertisedHost: "fd00::5" } }).controlPlane()).advertisedUrl(80)).toBe("wss://[fd00::5]:80");
  });
});

describe("Ec2Backend control plane options", () => {
  it("take FlyBackend's shape, checked the same way", () => {
    expect(() => new Ec2Backend({ runnerImage: "x", controlPlane: { advertisedHost: "http://10.0.0.1/" } })).toThrow(
      /option "controlPlane.advertisedHost": Expected a host name or IP address/,
    );
    expect(() => new Ec2Backend({ runnerImage: "x", controlPlane: { port: 70_000 } })).toThrow(/option "controlPlane.port"/);
    expect(() => new Ec2Backend({ runnerImage: "x", controlPlane: { hots: "::" } as never })).toThrow(/unknown option "controlPlane.hots" \(did you mean "controlPlane.host"\?\)/);
  });

  it("tell code written for earlier versions what the options are called now", () => {
    expect(() => new Ec2Backend({ runnerImage: "x", listenHost: "::" } as never)).toThrow(/"listenHost" is now "controlPlane.host"/);
    expect(() => new Ec2Backend({ runnerImage: "x", listenPort: 3600 } as never)).toThrow(/"listenPort" is now "controlPlane.port"/);
    expect(() => new Ec2Backend({ runnerImage: "x", parentAddress: "10.0.0.1" } as never)).toThrow(/"parentAddress" is now "controlPlane.advertisedHost"/);
  });

  it("bind and advertise what they say", async () => {
    const address = await new Ec2Backend({ runnerImage: "x", controlPlane: { host: "10.0.0.2", port: 4000, advertisedHost: "runner-gateway.internal" } }).controlPlane();
    expect(address).toMatchObject({ host: "10.0.0.2", port: 4000 });
    expect(address.advertisedUrl(4000)).toBe("wss://runner-gateway.internal:4000");
    const clear = await new Ec2Backend({ runnerImage: "x", controlPlane: { advertisedHost: "10.0.0.9", tls: false } }).controlPlane();
    expect(clear.advertisedUrl(4000)).toBe("ws://10.0.0.9:4000");
  });
});

describe("Ec2Backend boot script", () => {
  const base = { runnerId: "p-1-abc", pool: "p", parameterName: undefined, region: "eu-west-1", runnerCommand: undefined };

  it("exports values that survive any quoting, and is valid bash", () => {
    const tricky = `it's "$HOME" \`x\` \\ $(echo no)\nline two`;
    const script = bootScript({ ...base, env: { FLAME_PARENT: "abc", TRICKY: tricky }, runnerImage: RUNNER_IMAGE });
    expect(spawnSync("bash", ["-n"], { input: script }).status).toBe(0);
    expect(script).toContain(`export TRICKY=${shellQuote(tricky)}\n`);
    const printed = spawnSync("bash", ["-c", `export TRICKY=${shellQuote(tricky)}\nprintf %s "$TRICKY"`], { encoding: "utf8" });
    expect(printed.stdout).toBe(tricky);
    expect(shellQuote("a'b")).toBe(`'a'\\''b'`);
  });

  it("runs the image with host networking, passes the environment by name, and powers off after", () => {
    const script = bootScript({ ...base, env: { FLAME_PARENT: "secret-value", FLAME_ENTRY: "/app/main.js" }, runnerImage: RUNNER_IMAGE });
    const run = script.split("\n").find((line) => line.includes("docker run"))!;
    expect(run).toContain("--network host");
    expect(run).toContain("-e FLAME_PARENT -e FLAME_ENTRY");
    expect(run).not.toContain("secret-value");
    expect(script).not.toContain("docker login");
    expect(script.trimEnd().split("\n").at(-1)).toMatch(/^flame_poweroff /);
  });

  it("logs in to ECR for ECR images", () => {
    const image = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/app:v1";
    expect(ecrRegistry(image)).toEqual({ registry: "123456789012.dkr.ecr.eu-central-1.amazonaws.com", region: "eu-central-1" });
    expect(ecrRegistry("ghcr.io/acme/app:v1")).toBeUndefined();
    const script = bootScript({ ...base, env: {}, runnerImage: image });
    expect(script).toContain(
      "aws ecr get-login-password --region 'eu-central-1' | docker login --username AWS --password-stdin '123456789012.dkr.ecr.eu-central-1.amazonaws.com'",
    );
  });

  it("with a boot parameter, reads FLAME_PARENT from SSM and deletes it", () => {
    const script = bootScript({ ...base, env: { FLAME_ENTRY: "/e.js" }, parameterName: "/flame-ts/p-1-abc", runnerImage: RUNNER_IMAGE });
    expect(spawnSync("bash", ["-n"], { input: script }).status).toBe(0);
    expect(script).toContain("aws ssm --region 'eu-west-1' get-parameter --name \"$flame_parameter\" --with-decryption");
    expect(script).toContain("aws ssm --region 'eu-west-1' delete-parameter");
    expect(script).not.toContain("export FLAME_PARENT=");
    expect(script).toContain("-e FLAME_ENTRY -e FLAME_PARENT");
  });
});

describe("Ec2Backend parent address from instance metadata", () => {
  let server: Server | undefined;
  afterEach(async () => {
    if (server) await new Promise((resolve) => server!.close(resolve));
    server = undefined;
  });

  it("reads local-ipv4 with an IMDSv2 session token", async () => {
    server = fakeMetadataService("10.20.30.40");
    await once(server.listen(0, "127.0.0.1"), "listening");
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await expect(privateIpFromMetadata({ [METADATA_ENDPOINT_VAR]: endpoint })).resolves.toBe("10.20.30.40");
  });

  it("fails clearly, naming the option to set, where there is no metadata service", async () => {
    server = createServer((_request, response) => response.writeHead(404).end());
    await once(server.listen(0, "127.0.0.1"), "listening");
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const failure = await privateIpFromMetadata({ [METADATA_ENDPOINT_VAR]: endpoint }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(BackendError);
    expect(failure).toMatchObject({ retryable: false, message: expect.stringContaining('"controlPlane.advertisedHost"') });
  });
});

/** An IMDSv2 stand-in: a PUT gives a token, which GETs must present. */
function fakeMetadataService(ip: string): Server {
  const token = "imds-session-token";
  return createServer((request, response) => {
    if (request.method === "PUT" && request.url === "/latest/api/token" && request.headers["x-aws-ec2-metadata-token-ttl-seconds"]) {
      response.end(token);
    } else if (request.method === "GET" && request.url === "/latest/meta-data/local-ipv4") {
      if (request.headers["x-aws-ec2-metadata-token"] !== token) response.writeHead(401).end();
      else response.end(ip);
    } else {
      response.writeHead(404).end();
    }
  });
}

// ---- against moto ----------------------------------------------------------

const moto = motoAvailability();
const motoRequired = process.env[REQUIRE_MOTO_VAR] === "1";
if (!moto.available && !motoRequired) {
  console.warn(`Skipping the EC2 backend's moto tests: ${moto.reason} (${REQUIRE_MOTO_VAR}=1 makes this a failure)`);
}

describe.skipIf(!moto.available && !motoRequired)("Ec2Backend against moto", () => {
  if (!moto.available) {
    it("needs moto", () => {
      throw new Error(`${moto.reason}; ${REQUIRE_MOTO_VAR}=1 requires the EC2 tests to run (${MOTO_INSTALL_HINT})`);
    });
    return;
  }

  let server: MotoServer;
  let ec2: EC2Client;
  let ssm: SSMClient;
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  // Parent and runners must agree on the app version: the backend passes the parent's build id to runners.
  environmentForFile({ FLAME_BUILD_ID: BUILD_ID, FLY_IMAGE_REF: undefined });

  beforeAll(async () => {
    server = await startMoto();
    ec2 = new EC2Client({ region: MOTO_REGION, endpoint: server.endpoint, credentials: MOTO_CREDENTIALS });
    ssm = new SSMClient({ region: MOTO_REGION, endpoint: server.endpoint, credentials: MOTO_CREDENTIALS });
  });

  afterAll(async () => {
    await server?.stop();
  });

  beforeEach(async () => {
    await server.reset();
  });

  afterEach(async () => {
    // Pools first (they terminate their instances), then the hypervisor (it kills whatever still runs).
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function backend(options: Partial<Ec2BackendOptions> = {}): Ec2Backend {
    return testEc2Backend(server.endpoint, { runnerImage: RUNNER_IMAGE }, options);
  }

  function hypervisor(options: Partial<Parameters<typeof Ec2Hypervisor.start>[0]> = {}): Ec2Hypervisor {
    const started = Ec2Hypervisor.start({ endpoint: server.endpoint, ...options });
    cleanups.push(() => started.stop());
    return started;
  }

  function pool(options: Parameters<typeof makePool>[0]) {
    const made = makePool({ bootTimeout: 20_000, ...options });
    cleanups.push(() => made.pool.stop());
    return made;
  }

  async function instances(pool?: string): Promise<Instance[]> {
    const output = await ec2.send(
      new DescribeInstancesCommand({ Filters: pool ? [{ Name: "tag:flame:pool", Values: [pool] }] : undefined }),
    );
    return (output.Reservations ?? []).flatMap((reservation) => reservation.Instances ?? []);
  }

  const alive = (instance: Instance) => !["terminated", "shutting-down"].includes(instance.State?.Name ?? "");
  const tagsOf = (instance: Instance) => Object.fromEntries((instance.Tags ?? []).map((tag) => [tag.Key, tag.Value]));

  it("scales from zero to max and back to zero, every instance terminated", async () => {
    const machines = hypervisor();
    const { pool: scaling, sleep } = pool({ name: "ec2-scale", max: 3, maxConcurrency: 1, idleShutdownAfter: 200, backend: backend() });

    // Three long calls at once, one per runner: the pool must grow to max.
    const hold = new AbortController();
    const calls = [1, 2, 3].map(() => scaling.call(sleep, [30_000], { signal: hold.signal }));
    await waitFor(() => scaling.stats().inFlight === 3, "three runners each running a call", 20_000);
    expect(scaling.stats().runners.ready).toBe(3);
    const launched = await instances("ec2-scale");
    expect(launched.filter(alive)).toHaveLength(3);
    for (const machine of machines.machines.values()) {
      expect(machine.dockerRuns()).toHaveLength(1);
      expect(machine.dockerRuns()[0]).toEqual(expect.arrayContaining(["--network", "host", RUNNER_IMAGE]));
    }
    const listed = await scaling.backend.list({ pool: "ec2-scale" });
    expect(listed.map((runner) => runner.providerId).sort()).toEqual(launched.map((instance) => instance.InstanceId).sort());

    hold.abort();
    await Promise.allSettled(calls);
    await waitForMoto(async () => (await instances("ec2-scale")).every((instance) => !alive(instance)), "idle runners to be terminated in EC2");
    // The pool counts a runner gone once the backend's terminate has returned, a moment after EC2 shows it.
    await waitFor(() => scaling.stats().runners.total === 0, "the pool to count its runners gone");
    expect(scaling.stats().runners).toMatchObject({ booting: 0, ready: 0, draining: 0, stopping: 0 });
    expect((await instances("ec2-scale")).map((instance) => instance.State?.Name)).toEqual(["terminated", "terminated", "terminated"]);
    await waitForNoMachines(machines);
    expect(await scaling.backend.list({ pool: "ec2-scale" })).toEqual([]);
  });

  it("launches with the tags, IMDSv2, terminate-on-shutdown, the runner id as client token, and readable user data", async () => {
    const metadata = fakeMetadataService("127.0.0.1");
    await once(metadata.listen(0, "127.0.0.1"), "listening");
    process.env[METADATA_ENDPOINT_VAR] = `http://127.0.0.1:${(metadata.address() as AddressInfo).port}`;
    cleanups.push(() => {
      delete process.env[METADATA_ENDPOINT_VAR];
      return new Promise((resolve) => metadata.close(resolve));
    });
    hypervisor();
    // No controlPlane.advertisedHost: the parent finds its own from instance metadata.
    const ec2Backend = backend({ controlPlane: { host: "127.0.0.1", port: 0, checkRunnerAddress: false }, tags: { app: "flame-test" } });
    const { whoami } = pool({ name: "ec2-launch", max: 1, backend: ec2Backend });

    const { runnerId } = await whoami();
    const [instance] = await instances("ec2-launch");
    const id = instance!.InstanceId!;
    expect(tagsOf(instance!)).toMatchObject({ "flame:pool": "ec2-launch", "flame:runner": runnerId, "flame:parent": expect.any(String), app: "flame-test" });
    expect(instance!.MetadataOptions?.HttpTokens).toBe("required");
    expect(instance!.ClientToken).toBe(runnerId);
    expect(instance!.InstanceType).toBe("t3.small");
    const al2023 = await ssm.send(new GetParameterCommand({ Name: "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64" }));
    expect(instance!.ImageId).toBe(al2023.Parameter?.Value);
    const shutdown = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: id, Attribute: "instanceInitiatedShutdownBehavior" }));
    expect(shutdown.InstanceInitiatedShutdownBehavior?.Value).toBe("terminate");
    const volumes = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: "attachment.instance-id", Values: [id] }] }));
    expect(volumes.Volumes?.map((volume) => Object.fromEntries((volume.Tags ?? []).map((tag) => [tag.Key, tag.Value])))).toEqual([
      expect.objectContaining({ "flame:pool": "ec2-launch", "flame:runner": runnerId, app: "flame-test" }),
    ]);

    const userData = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: id, Attribute: "userData" }));
    const script = Buffer.from(userData.UserData!.Value!, "base64").toString("utf8");
    expect(script.startsWith("#!/bin/bash\n")).toBe(true);
    const parentLine = script.split("\n").find((line) => line.startsWith("export FLAME_PARENT="))!;
    const boot = decodeRunnerEnv(parentLine.slice("export FLAME_PARENT=".length).replaceAll("'", ""));
    const port = Number(new URL(boot.parentUrl).port);
    // TLS by default for a backend whose runners cross a network: the runner is given the certificate to pin.
    expect(boot).toMatchObject({ runnerId, pool: "ec2-launch", parentUrl: `wss://127.0.0.1:${port}`, tls: { fingerprint256: expect.any(String) } });
    expect((await ec2Backend.controlPlane()).advertisedUrl(port)).toBe(boot.parentUrl);
    expect(script).toContain(`export FLAME_ENTRY='${fixtureEntry}'`);
    expect(script).toContain(`export FLAME_BUILD_ID='${BUILD_ID}'`);

    expect(await ec2Backend.list({ pool: "ec2-launch" })).toEqual([
      { runnerId, providerId: id, pool: "ec2-launch", parentId: tagsOf(instance!)["flame:parent"], state: "running" },
    ]);
    await expect(ec2Backend.checkPermissions()).resolves.toBeUndefined();
  });

  it("gives runners the parent's FLAME_BUILD_ID without the env option, so they are not refused as another version", async () => {
    const machines = hypervisor();
    // The backend's env names no build id; the parent's environment has one (environmentForFile above).
    const { whoami } = pool({ name: "ec2-build-id", max: 1, backend: backend({ env: { APP_SETTING: "1" } }) });

    // Answered: the runner was welcomed, so its app version is the parent's.
    await expect(whoami()).resolves.toMatchObject({ runnerId: expect.any(String) });
    const [machine] = machines.machines.values();
    expect(machine!.userData).toContain(`export FLAME_BUILD_ID='${BUILD_ID}'`);
    expect(machine!.userData).toContain("export APP_SETTING='1'");
    expect(machine!.dockerRuns()[0]).toEqual(expect.arrayContaining(["-e", "FLAME_BUILD_ID"]));
  });

  it("resolves the AMI from an SSM parameter, once", async () => {
    await ssm.send(new PutParameterCommand({ Name: "/test/runner-ami", Value: "ami-0123456789abcdef0", Type: "String" }));
    const ec2Backend = backend({ imageParameter: "/test/runner-ami" });
    const first = await ec2Backend.provision(provisionRequest("ec2-ami-1-aaa"));
    await ssm.send(new PutParameterCommand({ Name: "/test/runner-ami", Value: "ami-0fedcba9876543210", Type: "String", Overwrite: true }));
    const second = await ec2Backend.provision(provisionRequest("ec2-ami-2-bbb"));
    const third = await backend({ imageParameter: "/test/runner-ami" }).provision(provisionRequest("ec2-ami-3-ccc"));
    const images = new Map((await instances("ec2-ami")).map((instance) => [instance.InstanceId, instance.ImageId]));
    expect([images.get(first.providerId), images.get(second.providerId), images.get(third.providerId)]).toEqual([
      "ami-0123456789abcdef0",
      "ami-0123456789abcdef0",
      "ami-0fedcba9876543210",
    ]);
    await Promise.all([first, second, third].map((runner) => ec2Backend.terminate(runner)));
    expect((await instances("ec2-ami")).every((instance) => !alive(instance))).toBe(true);
  });

  it('with tokenTransport "ssm", the token travels in a parameter the runner reads and deletes', async () => {
    const seen: Array<{ runnerId: string; parameter: string | undefined }> = [];
    const machines = hypervisor({
      gate: async ({ tags }) => {
        const name = `/flame-ts/${tags["flame:runner"]}`;
        const parameter = await ssm.send(new GetParameterCommand({ Name: name, WithDecryption: true })).catch(() => undefined);
        seen.push({ runnerId: tags["flame:runner"]!, parameter: parameter?.Parameter?.Value });
        return true;
      },
    });
    // An AMI with the app installed: the runner command runs the agent directly, no Docker.
    const runnerCommand = `cd ${shellQuote(REPO)} && ${[process.execPath, ...MIRROR_EXEC_ARGV, "src/runner-agent/main.ts"].map(shellQuote).join(" ")}`;
    const { whoami } = pool({
      name: "ec2-ssm",
      max: 1,
      backend: backend({ tokenTransport: "ssm", runnerImage: undefined, runnerCommand }),
    });

    const { runnerId } = await whoami();
    expect(seen).toHaveLength(1);
    const boot = decodeRunnerEnv(seen[0]!.parameter!);
    expect(boot.runnerId).toBe(runnerId);
    const [machine] = machines.machines.values();
    expect(machine!.userData).toContain(`/flame-ts/${runnerId}`);
    expect(machine!.userData).not.toContain(boot.token);
    expect(machine!.userData).not.toContain("export FLAME_PARENT=");
    expect(machine!.dockerRuns()).toEqual([]);
    // The runner deleted it once read.
    const left = await ssm.send(new GetParametersByPathCommand({ Path: "/flame-ts", Recursive: true }));
    expect(left.Parameters ?? []).toEqual([]);
  });

  it("terminates a runner that never connects at the boot timeout, and deletes its boot parameter", async () => {
    hypervisor({ gate: () => false });
    const { pool: hung, echo } = pool({ name: "ec2-hung", max: 1, bootTimeout: 1_000, backend: backend({ tokenTransport: "ssm" }) });

    const failure = await echo(1).catch((error: unknown) => error);
    // The caller waited bootTimeout; its error says the runner never connected.
    expect(failure).toMatchObject({ code: "FLAME_QUEUE_TIMEOUT", message: expect.stringMatching(/not connected back to the parent/) });
    let first: Instance | undefined;
    await waitForMoto(async () => {
      first = (await instances("ec2-hung")).sort((a, b) => a.LaunchTime!.getTime() - b.LaunchTime!.getTime())[0];
      return first !== undefined && !alive(first);
    }, "the hung instance to be terminated");
    const parameter = `/flame-ts/${tagsOf(first!)["flame:runner"]}`;
    await expect(ssm.send(new GetParameterCommand({ Name: parameter }))).rejects.toMatchObject({ name: "ParameterNotFound" });
    await hung.stop();
    expect((await instances("ec2-hung")).filter(alive)).toEqual([]);
  });

  it("takes a runner's token only from its instance's private IP: from anywhere else it is refused as a possible theft", async () => {
    hypervisor();
    const warnings: string[] = [];
    const log = { debug: () => undefined, info: () => undefined, error: () => undefined, warn: (_fields: unknown, message: string) => void warnings.push(message) };
    // The check on (the default): moto's instances are at private IPs, but their runners run on this host, at 127.0.0.1.
    const { pool: checked } = pool({
      name: "ec2-address",
      min: 1,
      max: 1,
      log,
      backend: backend({ controlPlane: { host: "127.0.0.1", port: 0, advertisedHost: "127.0.0.1" } }),
    });
    const failure = await checked.start().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(BootError);
    const [instance] = await instances("ec2-address");
    expect(instance!.PrivateIpAddress).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(warnings.find((warning) => warning.startsWith("possible token theft"))).toContain(`but its machine is at ${instance!.PrivateIpAddress}`);
    await checked.stop();
  });

  it("fails a boot at once when its instance powers off before the runner connects", async () => {
    const machines = hypervisor();
    const { pool: dying } = pool({
      name: "ec2-dies",
      min: 1,
      max: 1,
      bootTimeout: 20_000,
      backend: backend({ runnerImage: undefined, runnerCommand: "echo 'no runner on this image' >&2; exit 3" }),
    });

    // Not a boot timeout: the backend saw the instance end.
    const failure = await dying.start().catch((error: unknown) => error);
    expect(failure).toMatchObject({
      code: "FLAME_BOOT_FAILED",
      message: expect.stringMatching(/exited before connecting.*EC2 instance i-\w+ is (shutting-down|terminated)/),
    });
    const [machine] = machines.machines.values();
    expect(machine).toMatchObject({ poweredOff: true, killed: false });
    expect(machine!.output).toContain("the runner exited with status 3; powering off");
  });

  it("leaves no instance running once its parent is killed: connected runners and booting ones alike", async () => {
    let releaseSecond!: () => void;
    const secondMayBoot = new Promise<boolean>((resolve) => (releaseSecond = () => resolve(true)));
    let booted = 0;
    const machines = hypervisor({ gate: () => (++booted === 1 ? true : secondMayBoot) });
    const parent = startParent({ pool: "ec2-orphan", min: 1, thenMin: 2, runnerConnectTimeout: 1_500 });

    await parent.ready;
    await waitForMoto(async () => (await instances("ec2-orphan")).length === 2, "the second runner's instance");
    parent.process.kill("SIGKILL");
    await once(parent.process, "exit");
    releaseSecond();

    await waitForMoto(async () => (await instances("ec2-orphan")).every((instance) => !alive(instance)), "every runner to power off", 15_000);
    const ended = [...machines.machines.values()];
    expect(ended).toHaveLength(2);
    // Nobody terminated them: each runner exited (parent gone, or never reached it) and powered its machine off.
    expect(ended.map((machine) => [machine.poweredOff, machine.killed])).toEqual([[true, false], [true, false]]);
  });

  it("reaps the runners a crashed parent left behind, and only those", async () => {
    hypervisor({ gate: () => false });
    const parent = startParent({ pool: "ec2-reap", min: 2, thenMin: 2, runnerConnectTimeout: 1_500 });
    await waitForMoto(async () => (await instances("ec2-reap")).length === 2, "the crashed parent's instances", 15_000);
    parent.process.kill("SIGKILL");
    await once(parent.process, "exit");
    const otherBackend = backend();
    const other = await otherBackend.provision(provisionRequest("ec2-other-1-ccc"));
    cleanups.push(() => otherBackend.terminate(other));

    const { pool: restarted } = pool({ name: "ec2-reap", max: 1, backend: backend() });
    const reaped = await restarted.reap();
    const orphans = await instances("ec2-reap");
    expect(reaped.sort()).toEqual(orphans.map((instance) => tagsOf(instance)["flame:runner"]).sort());
    expect(orphans.every((instance) => !alive(instance))).toBe(true);
    expect((await instances("ec2-other")).map((instance) => instance.State?.Name)).toEqual(["running"]);
  });

  function startParent(config: { pool: string; min: number; thenMin: number; runnerConnectTimeout: number }): { process: ChildProcess; ready: Promise<void> } {
    const child = spawn(process.execPath, fromCopy(join(REPO, "test/support/moto-parent.ts")), {
      cwd: REPO,
      env: { ...process.env, FLAME_TEST_PARENT: JSON.stringify({ ...config, endpoint: server.endpoint }) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stderr!.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000)));
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout!.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("ready")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`the parent exited (${code}) before it was ready: ${output}`)));
    });
    ready.catch(() => undefined);
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    return { process: child, ready };
  }
});

function provisionRequest(runnerId: string): ProvisionRequest {
  const pool = runnerId.split("-").slice(0, 2).join("-");
  return {
    runnerId,
    pool,
    parentId: "test-parent",
    env: {
      FLAME_PARENT: encodeRunnerEnv({ parentUrl: "ws://127.0.0.1:9", runnerId, pool, token: "t", connectTimeout: 1_000, heartbeatInterval: 1_000 }),
    },
    entry: undefined,
    deadline: Date.now() + 10_000,
    signal: new AbortController().signal,
    log: silent,
  };
}

