/**
 * One call from the moment a caller makes it until it settles: queued, then
 * running on a runner. Owns the call's deadlines and its abort listener, so
 * that whatever settles it first (result, timeout, abort, runner exit) cleans
 * up everything else.
 */
import { CallAbortedError, CallTimeoutError, RemoteError, SerializationError, ThreadExitedError, UnknownFunctionError } from "../errors.js";
import type { ResultMessage, SerializedError } from "../protocol/messages.js";
import type { CallTrace } from "../observability/call-trace.js";
import type { CallChannelContext } from "../observability/channels.js";
import type { CallMeter } from "../observability/metrics.js";
import type { Deadline, Deadlines } from "./deadlines.js";
import type { InFlightCall, Runner } from "./runner.js";

export interface PendingCallOptions {
  callId: number;
  functionId: string;
  /** The encoded call message, serialized once when the call was made. */
  frame: Buffer;
  poolName: string;
  /** A placed child (placeChild): it keeps its runner from idling down. */
  child: boolean;
  /** Execution timeout in ms once on a runner (Infinity: none). */
  executionTimeout: number;
  /** The pool's deadlines, where this call's timeouts wait (one timer for all its calls). */
  deadlines: Deadlines;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  /** Called when the caller gives up: the pool dequeues the call or cancels it on its runner. */
  onGiveUp: (call: PendingCall, reason: "timeout" | "aborted") => void;
  /** The caller's signal: cancels the call at any stage. */
  signal?: AbortSignal | undefined;
  /** Called once the call is on a runner (placeChild uses it to learn the runner). */
  onPlaced?: ((runner: Runner) => void) | undefined;
  /** The call's OpenTelemetry span, when it is traced: told when the call queues, is placed and settles. */
  trace?: CallTrace | undefined;
  /** The call's measurements, when a MeterProvider is registered. */
  meter?: CallMeter | undefined;
  /** The `flame-ts:call` channel's context, when someone subscribes: it learns the runner id. */
  channelContext?: CallChannelContext | undefined;
}

export class PendingCall implements InFlightCall {
  readonly callId: number;
  readonly functionId: string;
  readonly frame: Buffer;
  readonly poolName: string;
  readonly child: boolean;
  readonly onPlaced: ((runner: Runner) => void) | undefined;
  private readonly executionTimeout: number;
  private readonly deadlines: Deadlines;
  private readonly resolve: (value: unknown) => void;
  private readonly reject: (error: Error) => void;
  private readonly onGiveUp: PendingCallOptions["onGiveUp"];
  private readonly trace: CallTrace | undefined;
  private readonly meter: CallMeter | undefined;
  private readonly channelContext: CallChannelContext | undefined;
  runner: Runner | undefined;
  /** Set by the runner when the caller gave up but the function may still be running there. */
  abandoned = false;
  graceTimer?: NodeJS.Timeout;
  /** When the wait for a runner ends (ms since epoch); Infinity until queued. */
  queueDeadline = Infinity;
  /** performance.now() when the call was made: the one clock its duration, wait, span and metrics are read from. */
  private readonly startedAt = performance.now();
  /** performance.now() when it began to wait for a runner; undefined if it never waited. */
  private queuedAt: number | undefined;
  /** Ms from the call to its result or error, once settled. */
  duration: number | undefined;
  private settled = false;
  private deadline: Deadline | undefined;
  private readonly removeAbortListener: (() => void) | undefined;

  constructor(options: PendingCallOptions) {
    ({
      callId: this.callId,
      functionId: this.functionId,
      frame: this.frame,
      poolName: this.poolName,
      child: this.child,
      executionTimeout: this.executionTimeout,
      deadlines: this.deadlines,
      resolve: this.resolve,
      reject: this.reject,
      onGiveUp: this.onGiveUp,
      onPlaced: this.onPlaced,
      trace: this.trace,
      meter: this.meter,
      channelContext: this.channelContext,
    } = options);
    const { signal, functionId } = options;
    if (signal) {
      const onAbort = () => {
        if (this.settled) return;
        this.onGiveUp(this, "aborted");
        this.fail(new CallAbortedError(functionId, signal.reason));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.removeAbortListener = () => signal.removeEventListener("abort", onAbort);
    }
  }

  get isSettled(): boolean {
    return this.settled;
  }

  /** Bounds the wait for a runner; `onExpire` decides the error (it knows why no runner came). */
  waitAtMost(milliseconds: number, onExpire: () => Error): void {
    if (this.settled) return;
    this.deadlines.cancel(this.deadline);
    // The wait for a runner starts here (the Scheduler bounds it as it queues the call).
    this.queuedAt ??= performance.now();
    this.queueDeadline = Date.now() + milliseconds;
    this.deadline = this.deadlines.add(milliseconds, () => {
      if (this.settled) return;
      this.fail(onExpire());
    });
  }

  /**
   * The call is now on `runner`: the queue timer gives way to the execution
   * timeout. Returns how long it waited for a runner, in ms (0 if it never waited).
   */
  placed(runner: Runner): number {
    this.runner = runner;
    if (this.channelContext) this.channelContext.runnerId = runner.id;
    const waited = this.queuedAt === undefined ? 0 : performance.now() - this.queuedAt;
    if (this.settled) return waited;
    this.trace?.placed(runner, this.queuedAt);
    this.meter?.placed(waited);
    this.deadlines.cancel(this.deadline);
    this.deadline = Number.isFinite(this.executionTimeout) ? this.deadlines.add(this.executionTimeout, this.timedOut) : undefined;
    this.onPlaced?.(runner);
    return waited;
  }

  /** Settles from the runner's answer (or a RunnerExitedError). */
  settle(result: ResultMessage | Error): void {
    if (result instanceof Error) return this.fail(result);
    if (result.ok) return this.succeed(result.value);
    this.fail(toError(result.error, this.poolName, this.functionId, this.runner?.id ?? "(unknown)"));
  }

  fail(error: Error): void {
    if (this.settled) return;
    this.cleanup();
    this.duration = performance.now() - this.startedAt;
    this.trace?.finished(error);
    this.meter?.finished(this.duration, error);
    this.reject(error);
  }

  private succeed(value: unknown): void {
    if (this.settled) return;
    this.cleanup();
    this.duration = performance.now() - this.startedAt;
    this.trace?.finished();
    this.meter?.finished(this.duration);
    this.resolve(value);
  }

  /** The execution timeout passed: the runner is told to abort, the caller gets a CallTimeoutError. */
  private readonly timedOut = () => {
    if (this.settled) return;
    this.onGiveUp(this, "timeout");
    this.fail(new CallTimeoutError(this.functionId, this.executionTimeout, "running"));
  };

  private cleanup(): void {
    this.settled = true;
    this.deadlines.cancel(this.deadline);
    this.removeAbortListener?.();
  }
}

/** Rebuilds the error a runner reported into the error the caller gets. */
export function toError(serialized: SerializedError, poolName: string, functionId: string, runnerId: string): Error {
  switch (serialized.kind) {
    case "thread-exited": {
      const thread = serialized.properties?.thread;
      return new ThreadExitedError(runnerId, typeof thread === "number" ? thread : 0, serialized.message, {
        cause: causeOf(serialized.cause, poolName, functionId, runnerId),
      });
    }
    case "unknown-function":
      return new UnknownFunctionError(poolName, functionId);
    case "serialization":
      return new SerializationError(`runner could not send the result of "${functionId}": ${serialized.message}`);
    default:
      return new RemoteError(serialized, { cause: causeOf(serialized.cause, poolName, functionId, runnerId) });
  }
}

function causeOf(cause: SerializedError["cause"], poolName: string, functionId: string, runnerId: string): unknown {
  if (cause === undefined) return undefined;
  if ("kind" in cause) return toError(cause as SerializedError, poolName, functionId, runnerId);
  return (cause as { value: unknown }).value;
}
