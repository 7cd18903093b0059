/**
 * Case 4, cold start: from an empty pool (min 0) to the first result of a
 * no-op call, against spawning `node` with a script that opens a WebSocket to
 * this process and sends one message. The Fly emulator variant runs when the
 * Fly backend is built (see flyColdStart below), and so does the Kubernetes
 * emulator variant (kubernetesColdStart). The TLS variant ("4. Cold
 * start (TLS)") boots through a `tls: true` process backend against spawning
 * `node` that dials `wss://` pinned to the server's certificate: the TLS
 * handshake is in both figures, and on the flame-ts side so is the listener's
 * fresh certificate (each repetition's pool starts its own listener, as the
 * clear pools do). The thread rows (under "4. Cold start", after the process
 * row, which is the 1-thread one) boot runners with `runnerThreads` 2 and
 * "auto" in the same repetitions, against the same spawn-and-connect
 * measurements: a runner with threads answers its first call only once its
 * worker threads have each imported the app, so their start is in the figure.
 */
import { spawn } from "node:child_process";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { WebSocketServer, type WebSocket } from "ws";
import type { Backend, PoolOptions } from "flame-ts";
import type { BenchContext } from "../lib/context.js";
import { interleave } from "../lib/measure.js";
import { compare, type CaseResult, type SkippedCase } from "../lib/report.js";
import { percentile } from "../lib/stats.js";
import { benchTlsIdentity, peerTlsEnv, type BenchTlsIdentity } from "../lib/tls.js";

const CONNECT_ONCE = fileURLToPath(new URL("../fixtures/connect-once.mjs", import.meta.url));
const AGENT_MAIN = fileURLToPath(new URL("../../dist/runner-agent/main.js", import.meta.url));

/** The spawn-and-connect floor: a server kept up across repetitions, one fresh `node` per measurement. */
class ConnectOnceBaseline {
  private constructor(
    private readonly server: WebSocketServer,
    private readonly url: string,
    private readonly tls: { identity: BenchTlsIdentity; server: HttpsServer } | undefined,
  ) {}

  /** In clear, or with `tls` a `ws` server on an `https` server that the child dials over `wss://`. */
  static async start(tls?: BenchTlsIdentity): Promise<ConnectOnceBaseline> {
    if (tls) {
      const httpsServer = createHttpsServer({ key: tls.keyPem, cert: tls.certificatePem });
      const server = new WebSocketServer({ server: httpsServer, perMessageDeflate: false });
      await new Promise<void>((resolve) => httpsServer.listen({ host: "127.0.0.1", port: 0 }, () => resolve()));
      const url = `wss://127.0.0.1:${(httpsServer.address() as AddressInfo).port}`;
      return new ConnectOnceBaseline(server, url, { identity: tls, server: httpsServer });
    }
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    return new ConnectOnceBaseline(server, `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, undefined);
  }

  /** Ms from spawn to the child's first message; waits (untimed) for the child to exit. */
  async measure(): Promise<number> {
    // Untimed: the environment that tells the child which certificate to pin.
    const env = this.tls ? { env: peerTlsEnv(this.tls.identity) } : {};
    const start = performance.now();
    const child = spawn(process.execPath, [CONNECT_ONCE, this.url], { stdio: ["ignore", "ignore", "inherit"], ...env });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const firstMessage = new Promise<number>((resolve, reject) => {
      const onConnection = (socket: WebSocket) => {
        this.server.off("connection", onConnection);
        socket.once("message", () => resolve(performance.now() - start));
      };
      this.server.on("connection", onConnection);
      child.once("exit", (code) => reject(new Error(`connect-once exited with ${code} before sending`)));
    });
    const elapsed = await firstMessage;
    await exited;
    return elapsed;
  }

  close(): void {
    for (const client of this.server.clients) client.terminate();
    this.server.close();
    this.tls?.server.close();
  }
}

export interface ColdStartOutcome {
  results: CaseResult[];
  skipped: SkippedCase[];
}

export async function coldStartCase(context: BenchContext): Promise<ColdStartOutcome> {
  const repetitions = context.quick ? 5 : 15;
  context.progress(`cold start: ${repetitions} x (empty pool to first result, spawn-and-connect)`);
  const baseline = await ConnectOnceBaseline.start();
  const results: CaseResult[] = [];
  const skipped: SkippedCase[] = [];
  try {
    let poolNumber = 0;
    // Worker threads the last "auto" runner started (its machine's parallelism), as the pool's stats report them.
    let autoThreads = 0;
    const coldCall = async (backend?: Backend, runnerThreads?: PoolOptions["runnerThreads"]): Promise<number> => {
      const { pool, noop } = context.flame.makePool({
        name: `bench-cold-${++poolNumber}`,
        min: 0,
        max: 1,
        ...(backend ? { backend } : {}),
        ...(runnerThreads === undefined ? {} : { runnerThreads }),
      });
      try {
        const start = performance.now();
        await noop();
        const elapsed = performance.now() - start;
        // Untimed: check the runner really runs calls on worker threads, so the row measures what it says.
        if (runnerThreads !== undefined) {
          const threads = pool.stats().threads.runners[0]?.threads ?? 0;
          if (runnerThreads === "auto") autoThreads = threads;
          else if (threads !== runnerThreads) throw new Error(`a runner with runnerThreads ${runnerThreads} reported ${threads} threads`);
        }
        return elapsed;
      } finally {
        await pool.stop();
      }
    };
    // The thread rows run in the same repetitions, so each is paired with the same spawn-and-connect figure.
    const samples = await interleave(
      {
        flame: () => coldCall(),
        flameTwoThreads: () => coldCall(undefined, 2),
        flameAutoThreads: () => coldCall(undefined, "auto"),
        spawn: () => baseline.measure(),
      },
      repetitions,
    );
    results.push(coldStartResult("4. Cold start", "process backend", samples.flame, samples.spawn, repetitions));
    results.push(threadsColdStartResult("2", samples.flameTwoThreads, samples.flame, samples.spawn, repetitions));
    results.push(threadsColdStartResult(`"auto" (${autoThreads} here)`, samples.flameAutoThreads, samples.flame, samples.spawn, repetitions));

    // ---- Fly emulator variant ------------------------------------------------
    // FlyBackend comes from the package's index; the emulator from its own entry
    // (dist/emulators/fly/emulator.js); skipped with a note if that is not built.
    const fly = await flyColdStart(context, coldCall, () => baseline.measure(), repetitions);
    if ("reason" in fly) skipped.push(fly);
    else results.push(fly);

    // ---- Kubernetes emulator variant -------------------------------------------
    const kubernetes = await kubernetesColdStart(context, coldCall, () => baseline.measure(), repetitions);
    if ("reason" in kubernetes) skipped.push(kubernetes);
    else results.push(kubernetes);

    // ---- TLS variant -----------------------------------------------------------
    // One backend for every repetition; each repetition's pool still starts (and stops) its own TLS listener.
    context.progress(`cold start over TLS: ${repetitions} x (empty pool to first result, spawn-and-connect over wss)`);
    const tlsBaseline = await ConnectOnceBaseline.start(await benchTlsIdentity());
    try {
      const tlsBackend = new context.flame.flame.ProcessBackend({ execArgv: [], tls: true });
      const tlsSamples = await interleave({ flame: () => coldCall(tlsBackend), spawn: () => tlsBaseline.measure() }, repetitions);
      results.push(coldStartResult("4. Cold start (TLS)", "process backend over TLS", tlsSamples.flame, tlsSamples.spawn, repetitions, "wss"));
    } finally {
      tlsBaseline.close();
    }
  } finally {
    baseline.close();
  }
  return { results, skipped };
}

function coldStartResult(title: string, backend: string, flame: number[], spawned: number[], repetitions: number, scheme: "ws" | "wss" = "ws"): CaseResult {
  const comparison = compare(`spawn node + ${scheme} connect + 1 message`, flame, spawned, {
    flameP99: [percentile(flame, 99)],
    otherP99: [percentile(spawned, 99)],
    target: (ratio) => ({ text: "<= 1.15x", met: ratio <= 1.15 }),
  });
  return {
    id: `cold-start-${backend.split(" ")[0]}${scheme === "wss" ? "-tls" : ""}`,
    title,
    metric: `min 0 to first result, ${backend}`,
    unit: "ms",
    better: "lower",
    repetitions,
    perRepetition: "one cold start (p99 of so few samples is their maximum)",
    comparisons: [comparison],
  };
}

/**
 * A thread row: the cold start of a runner with `runnerThreads` set, against
 * spawn-and-connect (the floor, as for every cold start) and against the
 * 1-thread runner of the same repetitions (what the threads add to a boot).
 * The issue sets no target for these rows.
 */
function threadsColdStartResult(threads: string, flame: number[], oneThread: number[], spawned: number[], repetitions: number): CaseResult {
  const p99 = (samples: number[]) => [percentile(samples, 99)];
  return {
    id: `cold-start-threads-${threads.split(" ")[0]!.replaceAll('"', "")}`,
    // The same title as the 1-thread process row, so the three print together.
    title: "4. Cold start",
    metric: `min 0 to first result, process backend, runnerThreads ${threads}`,
    unit: "ms",
    better: "lower",
    repetitions,
    perRepetition: "one cold start (p99 of so few samples is their maximum)",
    comparisons: [
      compare("spawn node + ws connect + 1 message", flame, spawned, { flameP99: p99(flame), otherP99: p99(spawned) }),
      compare("flame-ts, runnerThreads 1", flame, oneThread, { flameP99: p99(flame), otherP99: p99(oneThread) }),
    ],
  };
}

/**
 * FlyBackend paces machine creates to Fly's published limit (1 per second,
 * bursts of 3); repetitions are spaced so that pacing never delays a boot.
 */
const FLY_CREATE_SPACING = 1_050;

/** The parts of the built Fly emulator this case uses. */
interface FlyModules {
  emulator: {
    startFlyEmulator(options: Record<string, unknown>): Promise<{ url: string; token: string; app: string; close(): Promise<void> }>;
  };
}

/**
 * The Fly variant: the same cold start through FlyBackend against the local
 * Fly Machines API emulator (each machine is a local process running the
 * runner agent). The emulator's rate limits and spec validation are off: they
 * would measure the emulator, not the boot path; repetitions are spaced so the
 * backend's own pacing of creates does not count either.
 */
async function flyColdStart(
  context: BenchContext,
  coldCall: (backend: Backend) => Promise<number>,
  spawnBaseline: () => Promise<number>,
  repetitions: number,
): Promise<CaseResult | SkippedCase> {
  const emulatorModule = "emulators/fly/emulator.js";
  if (!context.flame.hasModule(emulatorModule)) return { id: "cold-start-fly", reason: `the Fly emulator is not built (no dist/${emulatorModule})` };
  let emulator: Awaited<ReturnType<FlyModules["emulator"]["startFlyEmulator"]>> | undefined;
  try {
    const { FlyBackend } = context.flame.flame;
    const { startFlyEmulator } = await context.flame.importModule<FlyModules["emulator"]>(emulatorModule);
    emulator = await startFlyEmulator({ validate: false, rateLimits: false, cwd: process.cwd() });
    const running = emulator;
    // One backend for every repetition, as an app keeps one per pool for its whole life.
    const backend = new FlyBackend({
      token: running.token,
      app: running.app,
      baseUrl: running.url,
      image: "registry.fly.io/flame-bench:local",
      init: { cmd: [process.execPath, AGENT_MAIN, context.flame.entry] },
      // In clear, like its spawn-and-connect baseline (FlyBackend's default is TLS): what TLS adds is the TLS row's figure.
      controlPlane: { host: "127.0.0.1", advertisedHost: "127.0.0.1", tls: false },
      // Machines do not inherit the parent's environment: the build id makes the app versions agree.
      env: { FLAME_BUILD_ID: process.env.FLAME_BUILD_ID ?? "" },
    });
    context.progress(`cold start through the Fly emulator: ${repetitions} repetitions, at most one per ${FLY_CREATE_SPACING} ms`);
    let lastCreate = 0;
    const paced = async () => {
      // Untimed: keep the backend's client-side pacing of creates (Fly's 1 per second) out of the figure.
      await delay(Math.max(0, lastCreate + FLY_CREATE_SPACING - performance.now()));
      lastCreate = performance.now();
      return coldCall(backend);
    };
    const samples = await interleave({ flame: paced, spawn: spawnBaseline }, repetitions);
    return coldStartResult("4. Cold start (Fly emulator)", "Fly backend + emulator", samples.flame, samples.spawn, repetitions);
  } catch (error) {
    return { id: "cold-start-fly", reason: `the Fly emulator case failed: ${(error as Error).message}` };
  } finally {
    await emulator?.close();
  }
}

/** The parts of the built Kubernetes emulator this case uses. */
interface KubernetesModules {
  emulator: {
    startKubernetesEmulator(options: Record<string, unknown>): Promise<{
      addExternalPod(spec: { name: string; namespace?: string; image: string }): unknown;
      writeKubeconfig(): Promise<string>;
      close(): Promise<void>;
    }>;
  };
}

/**
 * The Kubernetes variant: the same cold start through KubernetesBackend
 * against the local Kubernetes API emulator over HTTPS (each pod is a local
 * process running the runner agent): the Secret and pod creates, the watch
 * that reports the pod placed, and the runner's connect. Schema validation is
 * off (it measures the emulator, not the boot path); the control plane is in
 * clear, like its baseline.
 */
async function kubernetesColdStart(
  context: BenchContext,
  coldCall: (backend: Backend) => Promise<number>,
  spawnBaseline: () => Promise<number>,
  repetitions: number,
): Promise<CaseResult | SkippedCase> {
  const emulatorModule = "emulators/kubernetes/emulator.js";
  if (!context.flame.hasModule(emulatorModule)) return { id: "cold-start-kubernetes", reason: `the Kubernetes emulator is not built (no dist/${emulatorModule})` };
  let emulator: Awaited<ReturnType<KubernetesModules["emulator"]["startKubernetesEmulator"]>> | undefined;
  try {
    const { KubernetesBackend } = context.flame.flame;
    const { startKubernetesEmulator } = await context.flame.importModule<KubernetesModules["emulator"]>(emulatorModule);
    emulator = await startKubernetesEmulator({ validate: false, cwd: process.cwd(), namespace: "bench" });
    emulator.addExternalPod({ name: "bench-parent", namespace: "bench", image: "registry.example.com/flame-bench:local" });
    const backend = new KubernetesBackend({
      kubeconfig: await emulator.writeKubeconfig(),
      parentPod: { name: "bench-parent" },
      command: [process.execPath, AGENT_MAIN, context.flame.entry],
      controlPlane: { host: "127.0.0.1", port: 0, advertisedHost: "127.0.0.1", tls: false },
    });
    context.progress(`cold start through the Kubernetes emulator: ${repetitions} repetitions`);
    const samples = await interleave({ flame: () => coldCall(backend), spawn: spawnBaseline }, repetitions);
    return coldStartResult("4. Cold start (Kubernetes emulator)", "Kubernetes backend + emulator", samples.flame, samples.spawn, repetitions);
  } catch (error) {
    return { id: "cold-start-kubernetes", reason: `the Kubernetes emulator case failed: ${(error as Error).message}` };
  } finally {
    await emulator?.close();
  }
}
