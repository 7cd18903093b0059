/**
 * Booting one runner: provision it through the backend, wait for its
 * authenticated hello, check it runs the same protocol and app version, and
 * clean up everything (expectation, provider resource) if any step fails.
 */
import { randomBytes } from "node:crypto";
import type { WebSocket } from "ws";
import type { Backend, ProvisionedRunner } from "../backends/backend.js";
import { canonicalAddress, type ControlPlane } from "../control-plane/listener.js";
import { settledWithin } from "../retry.js";
import { BackendError, BootError, BootTimeoutError, FlameError, VersionMismatchError } from "../errors.js";
import type { Logger } from "../log.js";
import { decodeRunnerMessage, encodeMessage } from "../protocol/codec.js";
import { PROTOCOL_VERSION, type HelloMessage, type TraceContextCarrier } from "../protocol/messages.js";
import { encodeRunnerEnv, RUNNER_ENV_VAR, type RunnerThreads } from "../protocol/runner-env.js";
import type { Runner } from "./runner.js";

export interface BootContext {
  backend: Backend;
  controlPlane: ControlPlane;
  pool: string;
  parentId: string;
  entry: string | undefined;
  appVersion: string;
  bootTimeout: number;
  runnerConnectTimeout: number;
  heartbeatInterval: number;
  log: Logger;
  /** Aborted when the pool stops: the boot is abandoned and cleaned up. */
  signal: AbortSignal;
  /** The boot span's trace context (observability/boot-trace.ts), passed to the runner in its start environment. */
  traceContext?: TraceContextCarrier;
  /** How the runner spreads its calls over worker threads; undefined: on its main thread. */
  threads?: RunnerThreads | undefined;
  /** Someone presented this runner's token again after it connected (control plane: possible token theft). */
  onTokenReused(runner: Runner): void;
}

/** Boots `runner` (state "booting") until it is connected; throws a BootError otherwise. */
export async function bootRunner(runner: Runner, context: BootContext): Promise<void> {
  const deadline = Date.now() + context.bootTimeout;
  const token = randomBytes(32).toString("base64url");
  const abort = new AbortController();
  const onPoolAbort = () => abort.abort(new BootError(`pool "${context.pool}" stopped while runner ${runner.id} was booting`));
  context.signal.addEventListener("abort", onPoolAbort, { once: true });

  let resolveConnected!: (connection: Connection) => void;
  const connected = new Promise<Connection>((resolve) => (resolveConnected = resolve));
  // The runner may connect before the provider has answered the create (a slow or lost
  // response): listen for its hello from the first moment, or it would be missed.
  let stopPinging: (() => void) | undefined;
  const withdraw = context.controlPlane.expect(runner.id, token, (socket, peer) => {
    // The runner judges its parent's liveness from the moment its socket opens.
    stopPinging = pingUntilAttached(socket, context.heartbeatInterval);
    const reading = readHello(socket, runner.id);
    const { hello } = reading;
    hello.catch(() => undefined);
    resolveConnected({ socket, peer, ...reading });
  }, () => context.onTokenReused(runner), context.log);
  const timer = setTimeout(
    () =>
      abort.abort(
        new BootTimeoutError(
          `runner ${runner.id} (${context.backend.name} backend) never connected back to the parent at ${context.controlPlane.url} within bootTimeout (${context.bootTimeout} ms): check that runners can reach that address and that the runner image runs the flame-ts runner agent`,
        ),
      ),
    context.bootTimeout,
  );
  const aborted = new Promise<never>((_, reject) => {
    if (abort.signal.aborted) reject(abort.signal.reason);
    abort.signal.addEventListener("abort", () => reject(abort.signal.reason), { once: true });
  });
  aborted.catch(() => undefined);

  let provisioned: ProvisionedRunner | undefined;
  let socket: WebSocket | undefined;
  try {
    const provisioning = context.backend.provision({
      runnerId: runner.id,
      pool: context.pool,
      parentId: context.parentId,
      entry: context.entry,
      deadline,
      signal: abort.signal,
      log: context.log,
      env: {
        [RUNNER_ENV_VAR]: encodeRunnerEnv({
          parentUrl: context.controlPlane.url,
          runnerId: runner.id,
          pool: context.pool,
          token,
          connectTimeout: context.runnerConnectTimeout,
          heartbeatInterval: context.heartbeatInterval,
          ...(context.controlPlane.runnerTrust ? { tls: context.controlPlane.runnerTrust } : {}),
          ...(context.traceContext ? { traceContext: context.traceContext } : {}),
          ...(context.threads ? { threads: context.threads } : {}),
        }),
      },
    });
    // If the boot is abandoned while the provider is still creating, the runner it makes must still be removed.
    provisioning.then(
      (late) => {
        if (!provisioned && abort.signal.aborted) void terminateQuietly(context, late);
      },
      () => undefined,
    );
    provisioned = await Promise.race([provisioning, aborted]);
    runner.markProvisioned(provisioned);
    if (provisioned.address) context.controlPlane.bindAddress(runner.id, provisioned.address);

    const exited = provisioned.exited?.then((detail) => {
      throw runnerFailure(new BootError(`runner ${runner.id} exited before connecting to the parent: ${detail}`));
    });
    // What the provider saw go wrong (an image that cannot be pulled) says more than the exit it leads to, and whether to retry.
    const crashed = provisioned.failed ? Promise.race([provisioned.failed, ...(exited ? [exited] : [])]) : exited;
    crashed?.catch(() => undefined);
    const connection = await Promise.race([connected, aborted, ...(crashed ? [crashed] : [])]);
    socket = connection.socket;
    checkPeer(connection.peer, provisioned, runner.id, context);
    // A runner that dies right after connecting closes its socket a moment before its exit
    // (with its last output) is known: give the crash the chance to be the reason.
    const hello = await Promise.race([connection.hello.catch((error: unknown) => explainedByExit(error, crashed)), aborted, ...(crashed ? [crashed] : [])]);
    checkHello(hello, runner.id, context);
    if (socket.readyState !== socket.OPEN) throw new BootError(`runner ${runner.id} closed its connection right after saying hello`);
    socket.send(encodeMessage({ type: "welcome" }));
    connection.stopReading();
    return attachReady(runner, socket, connection.later, context, hello.threads ?? 0);
  } catch (error) {
    const failure = asBootError(error, runner.id, context);
    if (socket && failure instanceof VersionMismatchError) {
      socket.send(encodeMessage({ type: "refuse", reason: failure.message }));
      socket.close(4000, "refused");
    } else {
      socket?.terminate();
    }
    if (!abort.signal.aborted) abort.abort(failure);
    if (provisioned) await terminateQuietly(context, provisioned);
    throw failure;
  } finally {
    stopPinging?.();
    clearTimeout(timer);
    withdraw();
    context.signal.removeEventListener("abort", onPoolAbort);
  }
}

function attachReady(runner: Runner, socket: WebSocket, later: Array<Buffer | undefined>, context: BootContext, threads: number): void {
  runner.attach(socket, context.heartbeatInterval);
  runner.markReady(later, threads);
}

/** How long a failed hello waits for the runner's exit to explain it. */
const EXIT_EXPLANATION_WAIT = 500;

/** Rethrows `error`, or the runner's crash if it comes within a moment (it says more). */
async function explainedByExit(error: unknown, crashed: Promise<never> | undefined): Promise<never> {
  const crash = crashed && (await settledWithin(crashed.catch((thrown: unknown) => thrown), EXIT_EXPLANATION_WAIT));
  throw crash ?? error;
}

/** Pings a connected runner until the Runner takes over its heartbeat. */
function pingUntilAttached(socket: WebSocket, interval: number): () => void {
  const pinger = setInterval(() => {
    if (socket.readyState === socket.OPEN) socket.ping();
  }, interval);
  pinger.unref();
  return () => clearInterval(pinger);
}

/**
 * A connection that came before the backend said where its runner is (the
 * provider answered late) is checked now: the token from another address
 * than the runner's machine is a stolen one. Nothing was sent to that peer
 * yet (no welcome, no call), so ending it here means no forged result can
 * reach a caller; the boot fails and the pool starts another runner.
 */
function checkPeer(peer: string, provisioned: ProvisionedRunner, runnerId: string, context: BootContext): void {
  if (!provisioned.address || canonicalAddress(provisioned.address) === peer) return;
  context.log.warn(
    { runnerId, peer, runnerAddress: provisioned.address },
    `possible token theft: runner ${runnerId}'s one-time token was used from ${peer}, but its machine is at ${provisioned.address}; ending that connection and the runner`,
  );
  throw new BootError(`runner ${runnerId}'s token was used from ${peer}, not from its machine at ${provisioned.address} (possible token theft)`);
}

interface Connection {
  socket: WebSocket;
  /** The connection's remote IP address. */
  peer: string;
  hello: Promise<HelloMessage>;
  /** Frames that arrived after the hello, before the Runner took the socket over (handed to it). */
  later: Array<Buffer | undefined>;
  /** Stops reading for the boot: the Runner reads from here on. */
  stopReading(): void;
}

function readHello(socket: WebSocket, runnerId: string): Omit<Connection, "socket" | "peer"> {
  const later: Array<Buffer | undefined> = [];
  let onMessage: ((data: Buffer, isBinary: boolean) => void) | undefined;
  const hello = new Promise<HelloMessage>((resolve, reject) => {
    const onClose = () => reject(runnerFailure(new BootError(`runner ${runnerId} closed its connection before saying hello`)));
    socket.once("close", onClose);
    let first = true;
    // Frames that follow the hello in the same read arrive before the Runner is attached:
    // they are kept (a text frame as undefined, which the Runner refuses), never dropped unread.
    onMessage = (data: Buffer, isBinary: boolean) => {
      if (!first) {
        later.push(isBinary ? data : undefined);
        return;
      }
      first = false;
      socket.off("close", onClose);
      try {
        const message = decodeRunnerMessage(isBinary ? data : undefined);
        if (message.type !== "hello") throw new Error(`expected hello, got ${message.type}`);
        if (message.runnerId !== runnerId && message.protocolVersion === PROTOCOL_VERSION) {
          throw new Error(`it says it is runner ${message.runnerId}`);
        }
        resolve(message);
      } catch (error) {
        reject(runnerFailure(new BootError(`runner ${runnerId} sent an invalid hello: ${(error as Error).message}`, { cause: error })));
      }
    };
    socket.on("message", onMessage);
  });
  return { hello, later, stopReading: () => onMessage && socket.off("message", onMessage) };
}

function checkHello(hello: HelloMessage, runnerId: string, context: BootContext): void {
  if (hello.protocolVersion !== PROTOCOL_VERSION) {
    throw new VersionMismatchError(
      `runner ${runnerId} speaks protocol version ${hello.protocolVersion}, the parent speaks ${PROTOCOL_VERSION}: deploy the same flame-ts version on both`,
    );
  }
  if (hello.appVersion !== context.appVersion) {
    throw new VersionMismatchError(
      `runner ${runnerId} runs app version ${hello.appVersion}, the parent runs ${context.appVersion}: runners must run the same build as their parent`,
    );
  }
  if (hello.entryError) {
    throw runnerFailure(new BootError(`runner ${runnerId} could not load the app: ${hello.entryError}`));
  }
  if (!hello.poolDefined) {
    throw new BootError(
      `runner ${runnerId} loaded its entry module but it defines no pool named "${context.pool}": set the pool's "entry" option to the module that creates it`,
      { retryable: false },
    );
  }
}

function asBootError(error: unknown, runnerId: string, context: BootContext): FlameError {
  if (error instanceof BootError || error instanceof VersionMismatchError) return error;
  if (error instanceof BackendError) {
    return new BootError(`${context.backend.name} backend could not start runner ${runnerId}: ${error.message}`, {
      cause: error,
      retryable: error.retryable,
    });
  }
  return new BootError(`runner ${runnerId} failed to boot: ${(error as Error)?.message ?? String(error)}`, { cause: error });
}

async function terminateQuietly(context: BootContext, provisioned: ProvisionedRunner): Promise<void> {
  try {
    await context.backend.terminate(provisioned);
  } catch (error) {
    context.log.error({ err: error, runnerId: provisioned.runnerId }, "could not terminate a runner whose boot failed");
  }
}

/**
 * Failures the runner itself caused (it crashed, its entry failed to load, it
 * hung up before saying hello): a retry runs the same code on the same image,
 * so the same failure twice in a row is taken as final (see Scheduler.onBootFailed).
 */
const runnerFailures = new WeakSet<Error>();

export function failedOnTheRunner(error: unknown): boolean {
  return error instanceof Error && runnerFailures.has(error);
}

function runnerFailure(error: BootError): BootError {
  runnerFailures.add(error);
  return error;
}

/** What stays the same when a boot fails the same way again: the message without ids, pids and numbers. */
export function failureSignature(error: Error, runnerId: string): string {
  return error.message.split(runnerId).join("<runner>").replace(/\d+/g, "#");
}

/** Whether another attempt may succeed after this boot failure. */
export function isRetryable(error: unknown): boolean {
  if (error instanceof VersionMismatchError) return false;
  // A BootError carries its backend's retryability (asBootError); a BackendError can also come
  // straight from the backend's controlPlane() lookup, before bootRunner wraps anything.
  if (error instanceof BootError || error instanceof BackendError) return error.retryable;
  return true;
}
