/**
 * The example app (examples/image-service) as a user runs it: a real HTTP
 * server process started from its compiled JavaScript (the suite's copy of
 * its sources, as its image runs `node dist/server.js`; see runner-mirror.ts),
 * its renders on real runner processes,
 * stopped with SIGTERM: on the child-process backend, on the Fly backend
 * through the Fly emulator, on the Kubernetes backend through the
 * Kubernetes emulator, and on the EC2 backend through moto (where it is
 * installed), configured by environment variables only.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { PNG } from "pngjs";
import { afterAll, describe, expect, it } from "vitest";
import type { FlyEmulator } from "../../src/emulators/fly/emulator.js";
import type { KubernetesEmulator } from "../../src/emulators/kubernetes/emulator.js";
import { startTestKubernetesEmulator } from "../support/kubernetes.js";
import { copyOf, fromCopy } from "../support/backends.js";
import { Ec2Hypervisor, waitForNoMachines } from "../support/ec2-hypervisor.js";
import { liveMachines, startTestEmulator, TEST_IMAGE } from "../support/fly.js";
import { MOTO_CREDENTIALS, MOTO_REGION, motoAvailability, REQUIRE_MOTO_VAR, startMoto, type MotoServer } from "../support/moto.js";
import { keepProcessesAcrossTests } from "../support/no-leftover-processes.js";
import { descendantPids, isAlive, waitFor } from "../support/processes.js";

// The service runs from the first test of a block to its last.
keepProcessesAcrossTests();

const REPOSITORY = fileURLToPath(new URL("../..", import.meta.url));
const SERVER = `${REPOSITORY}examples/image-service/src/server.ts`;
/** The module runners import (the pool's entry), as the service's copy has it. */
const POOL_ENTRY = copyOf(`${REPOSITORY}examples/image-service/src/pool.ts`);
/** What an image would run for a runner: the CLI's `runner` command on the pool's module, from the copy. */
const RUNNER_ARGUMENTS = [copyOf(`${REPOSITORY}src/cli.ts`), "runner", POOL_ENTRY];

interface Service {
  child: ChildProcess;
  url: string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

const started: Service[] = [];

/** Starts the service from the copy, on a free port, with only `env` as its configuration. */
async function startService(env: Record<string, string>): Promise<Service> {
  const child = spawn(process.execPath, fromCopy(SERVER), {
    cwd: REPOSITORY,
    env: { ...cleanEnvironment(), PORT: "0", FLAME_LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  const exit = once(child, "exit").then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const service: Service = { child, url: "", exit, output: () => output };
  started.push(service);
  const listening = await Promise.race([
    waitFor(() => /listening on http:\/\/localhost:\d+/.test(output), "the service to listen", 15_000).then(() => true),
    exit.then(() => false),
  ]);
  if (!listening) throw new Error(`the service exited before listening:\n${output}`);
  service.url = `http://127.0.0.1:${/listening on http:\/\/localhost:(\d+)/.exec(output)![1]}`;
  return service;
}

/** This process's environment without the settings the service reads, so the test's own environment cannot leak in. */
function cleanEnvironment(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^(FLAME_|FLY_|POOL_|EC2_|AWS_|POD_|KUBE|OTEL_|RUNNER_COMMAND$|RENDER_TIMEOUT_MS$|PORT$|HOST$)/.test(name)) delete env[name];
  }
  return env;
}

/** Runner processes of the service: its children that run the runner agent. */
function runnerPids(service: Service): number[] {
  return descendantPids(service.child.pid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("runner-agent/main");
    } catch {
      return false;
    }
  });
}

async function stats(service: Service) {
  const response = await fetch(`${service.url}/stats`);
  expect(response.status).toBe(200);
  return (await response.json()) as {
    backend: string;
    pool: {
      runners: Record<"booting" | "ready" | "busy" | "idle" | "draining" | "stopping", number>;
      completed: number;
      failed: number;
      threads: { total: number; runners: Array<{ runnerId: string; threads: number; load: number }> };
    };
  };
}

function runnerCount(body: Awaited<ReturnType<typeof stats>>): number {
  const { booting, ready, draining, stopping } = body.pool.runners;
  return booting + ready + draining + stopping;
}

async function fetchPng(url: string, init?: RequestInit): Promise<PNG> {
  const response = await fetch(url, init);
  const body = Buffer.from(await response.arrayBuffer());
  expect(response.status, body.toString("utf8", 0, 300)).toBe(200);
  expect(response.headers.get("content-type")).toBe("image/png");
  return PNG.sync.read(body);
}

/** Distinct colours in an image: a render is not a blank canvas. */
function colours(image: PNG): number {
  const seen = new Set<number>();
  for (let offset = 0; offset < image.data.length; offset += 4) seen.add(image.data.readUInt32BE(offset));
  return seen.size;
}

async function stopService(service: Service) {
  service.child.kill("SIGTERM");
  return service.exit;
}

afterAll(async () => {
  // A failed test may leave its service running.
  for (const service of started) {
    if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill("SIGKILL");
  }
});

describe("on the child-process backend", () => {
  let service: Service;

  it("starts and answers /healthz without a runner", async () => {
    service = await startService({ POOL_MAX: "2", POOL_IDLE_SHUTDOWN_MS: "800" });
    const response = await fetch(`${service.url}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
    const body = await stats(service);
    expect(body.backend).toBe("process");
    expect(runnerCount(body)).toBe(0);
    expect(runnerPids(service)).toEqual([]);
  });

  it("renders concurrent requests on runners it boots, as PNGs of the requested size", async () => {
    const sizes = [
      [320, 200],
      [200, 320],
      [256, 256],
      [300, 120],
      [64, 48],
    ] as const;
    const images = await Promise.all(
      sizes.map(([width, height], i) => fetchPng(`${service.url}/fractal?width=${width}&height=${height}&zoom=${i + 1}&iterations=300`)),
    );
    images.forEach((image, i) => {
      expect([image.width, image.height]).toEqual(sizes[i]);
      expect(colours(image)).toBeGreaterThan(20);
    });
    const body = await stats(service);
    expect(body.pool.completed).toBe(sizes.length);
    // Runners were booted (they idle for 800 ms before shutting down), at most POOL_MAX of them.
    expect(runnerCount(body)).toBeGreaterThanOrEqual(1);
    expect(runnerCount(body)).toBeLessThanOrEqual(2);
    const runners = runnerPids(service);
    expect(runners.length).toBeGreaterThanOrEqual(1);
    // Runners import the module that defines the pool, not the HTTP server.
    for (const pid of runners) expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).toContain(POOL_ENTRY);
  });

  it("makes a thumbnail of an uploaded PNG, keeping its aspect ratio", async () => {
    const source = PNG.sync.write(await fetchPng(`${service.url}/fractal?width=400&height=300&iterations=200`));
    const thumbnail = await fetchPng(`${service.url}/thumbnail?width=100`, {
      method: "POST",
      headers: { "content-type": "image/png" },
      body: source,
    });
    expect([thumbnail.width, thumbnail.height]).toEqual([100, 75]);
    expect(colours(thumbnail)).toBeGreaterThan(20);
  });

  it("answers 400 with a clear message to bad parameters and bad uploads", async () => {
    const cases: Array<[string, RequestInit | undefined, RegExp]> = [
      ["/fractal?width=abc", undefined, /"width" must be an integer from 1 to 4096, got "abc"/],
      ["/fractal?width=4096&height=4096", undefined, /at most 4194304 are rendered/],
      ["/fractal?zoom=-1", undefined, /"zoom" must be > 0/],
      ["/fractal?colour=red", undefined, /unknown parameter "colour"/],
      ["/thumbnail", { method: "POST", body: "x" }, /give the thumbnail's "width", "height" or both/],
      ["/thumbnail?width=10", { method: "POST" }, /send the PNG to resize as the request body/],
      // Found out on the runner: its error code comes back with the error.
      ["/thumbnail?width=10", { method: "POST", body: "not a png at all, sorry" }, /not a PNG image/],
    ];
    for (const [path, init, message] of cases) {
      const response = await fetch(`${service.url}${path}`, init);
      expect(response.status, path).toBe(400);
      expect(((await response.json()) as { error: string }).error).toMatch(message);
    }
    expect((await fetch(`${service.url}/nowhere`)).status).toBe(404);
    expect((await fetch(`${service.url}/fractal`, { method: "DELETE" })).status).toBe(405);
  });

  it("scales back to zero runners when idle", async () => {
    await waitFor(async () => runnerCount(await stats(service)) === 0, "the pool to scale to zero", 5_000);
    await waitFor(() => runnerPids(service).length === 0, "the runner processes to exit", 3_000);
  });

  it("on SIGTERM, stops its pool and exits, leaving no runner behind", async () => {
    // A runner is up when the signal comes.
    await fetchPng(`${service.url}/fractal?width=50&height=50`);
    const runners = runnerPids(service);
    expect(runners.length).toBeGreaterThanOrEqual(1);
    expect(await stopService(service)).toEqual({ code: 0, signal: null });
    await waitFor(() => runners.every((pid) => !isAlive(pid)), "the runners to exit", 3_000);
    expect(service.output()).toMatch(/SIGTERM: closing the server and stopping the pool\n(.*\n)*stopped\n/);
  });
});

describe("with OpenTelemetry on (OTEL_EXPORTER_OTLP_ENDPOINT)", () => {
  it("exports one trace per render, from the parent's call span into the runner's, and the pool's metrics, over OTLP/HTTP", async () => {
    // A stand-in for a collector: it keeps what the service's and its runners' exporters POST.
    const received: { path: string; body: any }[] = [];
    const collector = createHttpServer((request, response) => {
      let text = "";
      request.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
      request.on("end", () => {
        received.push({ path: request.url ?? "", body: JSON.parse(text || "{}") });
        response.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    try {
      const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
      const service = await startService({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SERVICE_NAME: "images-under-test", POOL_MAX: "1" });
      await fetchPng(`${service.url}/fractal?width=64&height=48&zoom=1`);
      expect(await stopService(service)).toEqual({ code: 0, signal: null });

      const spans = received
        .filter((post) => post.path === "/v1/traces")
        .flatMap((post) => post.body.resourceSpans ?? [])
        .flatMap((resource: any) => (resource.scopeSpans ?? []).flatMap((scope: any) => scope.spans ?? []).map((span: any) => ({ ...span, resource: resource.resource })));
      const client = spans.find((span: any) => span.name === "fractal" && span.kind === 3);
      const server = spans.find((span: any) => span.name === "fractal" && span.kind === 2);
      expect(client, "the parent's CLIENT span").toBeDefined();
      expect(server, "the runner's SERVER span").toBeDefined();
      expect(server.traceId).toBe(client.traceId);
      expect(server.parentSpanId).toBe(client.spanId);
      expect(JSON.stringify(client.resource)).toContain("images-under-test");
      const metricNames = received
        .filter((post) => post.path === "/v1/metrics")
        .flatMap((post) => post.body.resourceMetrics ?? [])
        .flatMap((resource: any) => (resource.scopeMetrics ?? []).flatMap((scope: any) => (scope.metrics ?? []).map((metric: any) => metric.name)));
      expect(metricNames).toContain("rpc.client.call.duration");
    } finally {
      await new Promise<void>((resolve) => collector.close(() => resolve()));
    }
  });
});

describe("configuration errors", () => {
  it("name every missing or malformed setting, and the service does not start", async () => {
    const child = spawn(process.execPath, fromCopy(SERVER), {
      cwd: REPOSITORY,
      env: { ...cleanEnvironment(), FLAME_BACKEND: "fly", POOL_MAX: "lots", FLY_API_TOKEN: "not-shown" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const [code] = await once(child, "exit");
    expect(code).toBe(1);
    expect(stderr).toContain("the image service is not configured correctly");
    expect(stderr).toContain('POOL_MAX must be an integer from 1 up, got "lots"');
    expect(stderr).toContain("FLAME_BACKEND=fly needs FLY_APP_NAME, FLY_IMAGE_REF, FLY_PRIVATE_IP");
    expect(stderr).not.toContain("not-shown");
    // A message, not a stack trace.
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});

describe("on the Fly backend, through the Fly emulator", () => {
  let emulator: FlyEmulator;
  let service: Service;

  afterAll(async () => {
    await emulator?.close();
  });

  it("renders on machines created from RUNNER_COMMAND, without the app's secrets, and destroys them on SIGTERM", async () => {
    emulator = await startTestEmulator({ secrets: { FLY_API_TOKEN: "secret-of-the-app" } });
    service = await startService({
      FLAME_BACKEND: "fly",
      FLY_API_HOSTNAME: emulator.url,
      FLY_API_TOKEN: emulator.token,
      FLY_APP_NAME: emulator.app,
      FLY_IMAGE_REF: TEST_IMAGE,
      FLY_PRIVATE_IP: "127.0.0.1",
      POOL_MAX: "2",
      // Each machine renders on two worker threads (and so takes two renders at once).
      POOL_RUNNER_THREADS: "2",
      // What an image would run, as the emulator runs it: a local process, in the emulator's directory (the repository).
      RUNNER_COMMAND: JSON.stringify([process.execPath, "--enable-source-maps", ...RUNNER_ARGUMENTS]),
    });
    const images = await Promise.all([1, 2, 3].map((zoom) => fetchPng(`${service.url}/fractal?width=160&height=90&zoom=${zoom}`)));
    for (const image of images) expect([image.width, image.height]).toEqual([160, 90]);
    const served = await stats(service);
    expect(served.backend).toBe("fly");
    expect(served.pool.threads.runners.length).toBeGreaterThanOrEqual(1);
    for (const runner of served.pool.threads.runners) expect(runner.threads).toBe(2);

    const machines = liveMachines(emulator);
    expect(machines.length).toBeGreaterThanOrEqual(1);
    expect(machines.length).toBeLessThanOrEqual(2);
    for (const machine of machines) {
      expect(machine.config.init.cmd.slice(-3)).toEqual(RUNNER_ARGUMENTS);
      expect(machine.env.FLY_API_TOKEN).toBeUndefined();
    }
    expect(emulator.violations()).toEqual([]);

    expect(await stopService(service)).toEqual({ code: 0, signal: null });
    // The pool destroyed its machines through the API before the service exited (not merely left them to exit with their parent).
    // (A runner still booting when the pool stops may be destroyed twice: terminate is idempotent. A runner told to shut down
    // may exit, and its machine auto-destroy, before the pool's DELETE arrives: that DELETE is answered 404, seen once under load.)
    const destroyed = emulator.requests().filter((request) => request.operationId === "Machines_delete" && (request.status === 200 || request.status === 404));
    expect([...new Set(destroyed.map((request) => request.path.split("/").pop()))].sort()).toEqual(machines.map((machine) => machine.id).sort());
    await waitFor(() => liveMachines(emulator).length === 0, "the runner machines to be destroyed", 5_000);
  });
});

describe("on the Kubernetes backend, through the Kubernetes emulator", () => {
  let emulator: KubernetesEmulator;

  afterAll(async () => {
    await emulator?.close();
  });

  it("renders on pods of its own pod's image, configured by the downward API's variables, and deletes them on SIGTERM", async () => {
    emulator = await startTestKubernetesEmulator({ namespace: "image-service" });
    // The service "runs in" this pod: runners get its image and belong to it.
    emulator.addExternalPod({ name: "image-service-7c9", namespace: "image-service", image: "registry.example.com/image-service:v1" });
    const service = await startService({
      FLAME_BACKEND: "kubernetes",
      KUBECONFIG: await emulator.writeKubeconfig(),
      POD_NAME: "image-service-7c9",
      POD_NAMESPACE: "image-service",
      POD_IP: "127.0.0.1",
      // Any free port: other tests run beside this one (the default, 3526, is what a NetworkPolicy names).
      KUBERNETES_LISTEN_PORT: "0",
      POOL_MAX: "2",
      RUNNER_COMMAND: JSON.stringify([process.execPath, "--enable-source-maps", ...RUNNER_ARGUMENTS]),
    });
    const images = await Promise.all([1, 2].map((zoom) => fetchPng(`${service.url}/fractal?width=120&height=80&zoom=${zoom}`)));
    for (const image of images) expect([image.width, image.height]).toEqual([120, 80]);
    expect((await stats(service)).backend).toBe("kubernetes");
    const pods = emulator.pods("image-service").filter((pod: any) => pod.metadata.labels?.["app.kubernetes.io/managed-by"] === "flame-ts") as any[];
    expect(pods.length).toBeGreaterThanOrEqual(1);
    for (const pod of pods) {
      expect(pod.spec.containers[0].image).toBe("registry.example.com/image-service:v1");
      expect(pod.metadata.ownerReferences[0].name).toBe("image-service-7c9");
    }
    expect(emulator.violations()).toEqual([]);
    expect(await stopService(service)).toEqual({ code: 0, signal: null });
    // The pool deleted its pods and Secrets through the API before the service exited.
    const managed = (object: any) => object.metadata.labels?.["app.kubernetes.io/managed-by"] === "flame-ts";
    await waitFor(() => !emulator.pods("image-service").some(managed) && !emulator.secrets("image-service").some(managed), "the runner pods and Secrets to be deleted", 5_000);
  });
});

const moto = motoAvailability();
const motoRequired = process.env[REQUIRE_MOTO_VAR] === "1";

describe.skipIf(!moto.available && !motoRequired)("on the EC2 backend, through moto and the test hypervisor", () => {
  let server: MotoServer | undefined;
  let hypervisor: Ec2Hypervisor | undefined;

  afterAll(async () => {
    await hypervisor?.stop();
    await server?.stop();
  });

  it("launches instances that run the runner image, with the parent's build id, and terminates them on SIGTERM", async () => {
    if (!moto.available) throw new Error(`${moto.reason}; ${REQUIRE_MOTO_VAR}=1 requires the EC2 tests to run`);
    server = await startMoto();
    hypervisor = Ec2Hypervisor.start({ endpoint: server.endpoint });
    const service = await startService({
      FLAME_BACKEND: "ec2",
      // The AWS SDK's own variables: region, credentials, and moto as the endpoint.
      AWS_REGION: MOTO_REGION,
      AWS_ACCESS_KEY_ID: MOTO_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: MOTO_CREDENTIALS.secretAccessKey,
      AWS_ENDPOINT_URL: server.endpoint,
      AWS_EC2_METADATA_DISABLED: "true",
      EC2_RUNNER_IMAGE: "registry.example.com/image-service:1",
      // Not on EC2: no instance metadata to read the parent's address from.
      EC2_PARENT_ADDRESS: "127.0.0.1",
      // Runners run on this host, not at the private IPs moto gives their instances.
      EC2_CHECK_RUNNER_ADDRESS: "false",
      EC2_LISTEN_PORT: "0",
      // Runners must get it too, or their app version differs from the parent's and they are refused.
      FLAME_BUILD_ID: "image-service-test",
      POOL_MAX: "2",
    });
    const images = await Promise.all([1, 2].map((zoom) => fetchPng(`${service.url}/fractal?width=120&height=80&zoom=${zoom}`)));
    for (const image of images) expect([image.width, image.height]).toEqual([120, 80]);
    expect((await stats(service)).backend).toBe("ec2");

    const machines = [...hypervisor.machines.values()];
    expect(machines.length).toBeGreaterThanOrEqual(1);
    expect(machines.length).toBeLessThanOrEqual(2);
    for (const machine of machines) {
      const [run] = machine.dockerRuns();
      expect(run).toEqual(expect.arrayContaining(["--network", "host", "registry.example.com/image-service:1"]));
      expect(run!.join(" ")).toContain("-e FLAME_BUILD_ID");
      expect(machine.userData).toContain(`export FLAME_ENTRY='${POOL_ENTRY}'`);
    }

    expect(await stopService(service)).toEqual({ code: 0, signal: null });
    await waitForNoMachines(hypervisor, 5_000);
    // A powered-off instance is terminated through EC2; the hypervisor sees it ended at its next poll.
    await waitFor(() => machines.every((machine) => machine.ended), "every instance to be terminated", 5_000);
  });
});
