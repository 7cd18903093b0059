/**
 * The Pool: the public face of flame-ts. It validates options and calls,
 * registers defined functions, encodes each call once, and hands it to its
 * Scheduler (scheduler.ts), which routes it to the least-loaded runner, queues
 * it, grows the pool between `min` and `max`, and shrinks idle runners.
 * Per-call timers live in pending-call.ts.
 */
import type { Backend } from "../backends/backend.js";
import { ProcessBackend } from "../backends/process.js";
import { CallAbortedError, InvalidOptionError, PoolStoppedError, UnguardedCallError } from "../errors.js";
import { childLogger, resolveLogger, type Logger } from "../log.js";
import { encodeMessage } from "../protocol/codec.js";
import { appVersion, callsAreUnguarded, isRunner, registerPool, unregisterPool, type RegisteredPool } from "../runtime.js";
import { isDefinedFunction, type AnyDefinedFunction, type AnyRemoteFunction, type RemoteFunction } from "./function.js";
import { constructingModule } from "./entry.js";
import {
  resolveCallOptions,
  resolvePoolOptions,
  resolveResize,
  type CallOptions,
  type PoolOptions,
  type ResizeOptions,
  type ResolvedPoolOptions,
} from "./options.js";
import { Deadlines } from "./deadlines.js";
import { PendingCall } from "./pending-call.js";
import type { Runner } from "./runner.js";
import { Scheduler } from "./scheduler.js";
import { startChild, type PlacedChild } from "./child.js";
import { CallTrace } from "../observability/call-trace.js";
import { PoolMetrics, type CallMeter } from "../observability/metrics.js";
import { withTraceIds } from "../observability/log-correlation.js";
import { callChannel, callChannelHasSubscribers, type CallChannelContext } from "../observability/channels.js";
import { DurationSummary, type DurationStats } from "../observability/duration-summary.js";

/** What `pool.stats()` returns: a snapshot of the pool's runners, boots and calls. */
export interface PoolStats {
  /**
   * Runners by state. `total` = `booting` + `ready` + `draining` + `stopping`
   * (each runner is in exactly one of these four). `busy` and `idle` split
   * `ready` (`ready` = `busy` + `idle`: a ready runner running calls, or
   * none); they are not added to `total` again.
   */
  runners: { total: number; booting: number; ready: number; busy: number; idle: number; draining: number; stopping: number };
  /**
   * Runner boots since the pool was made: `started` = `succeeded` + `failed`
   * + boots in progress. A boot abandoned because the pool stopped counts as failed.
   */
  boots: { started: number; succeeded: number; failed: number };
  /** Calls running on runners (placed children included). */
  inFlight: number;
  /** Callers waiting for a runner. */
  queued: number;
  /** Calls that returned a value. */
  completed: number;
  /** Calls that ended in an error (including timeouts and aborts). */
  failed: number;
  /**
   * How long calls waited for a runner, in ms: one sample per call placed on
   * a runner (0 for a call placed at once); calls that failed while queued are not in it.
   */
  queueWait: DurationStats;
  /**
   * How long calls took as their callers saw them, in ms, from the call to
   * its result or error (timeouts and aborts included; calls refused before
   * they were made are not in it).
   */
  callDuration: DurationStats;
  /**
   * Worker threads (pool option `runnerThreads`) on the runners that are
   * connected: `total` across them, and per runner its threads and its calls
   * in flight (spread over those threads). A runner whose calls run on its
   * main thread (`runnerThreads: 1`) has 0.
   */
  threads: { total: number; runners: Array<{ runnerId: string; threads: number; load: number }> };
}

const DEFAULT_BOOT_TIMEOUT = 30_000;

/**
 * A pool of runners for the functions it defines: `define` them, then call
 * them (directly, or with `call`, `cast`, `placeChild`); runners boot on
 * demand between `min` and `max` and shut down when idle. See PoolOptions.
 */
export class Pool implements AsyncDisposable {
  readonly name: string;
  private readonly options: Readonly<ResolvedPoolOptions>;
  private readonly log: Logger;
  private readonly functions = new Map<string, (...args: any[]) => unknown>();
  private readonly scheduler: Scheduler;
  private readonly metrics: PoolMetrics;
  /** The backend runners boot on (a ProcessBackend unless one was given). */
  readonly backend: Backend;
  private stopping: Promise<void> | undefined;
  private nextCallId = 1;
  private completed = 0;
  private failed = 0;
  private readonly callDuration = new DurationSummary();
  /** Every call's timeouts, on one timer per duration. */
  private readonly deadlines = new Deadlines();

  constructor(options: PoolOptions) {
    // On a runner the pool is the runner's copy of the definition: it never keeps runners of its own.
    this.options = resolvePoolOptions(options, { constructedIn: constructingModule(), onRunner: isRunner() });
    this.name = this.options.name;
    this.backend = this.options.backend ?? new ProcessBackend();
    if (this.options.runnerThreads !== 1 && this.backend.name === "local") {
      throw new InvalidOptionError(
        `invalid Pool "${this.name}" options: runnerThreads needs runners of their own (ProcessBackend, Fly, EC2, Kubernetes); LocalBackend runs calls on the parent's own thread`,
      );
    }
    this.log = childLogger(withTraceIds(resolveLogger(this.options.log)), { pool: this.name });
    this.metrics = new PoolMetrics(this.name, this.backend.name, {
      runnersByState: () => {
        const { booting, idle, busy, draining, stopping } = this.scheduler.runners.countByState();
        return { booting, idle, busy, draining, stopping };
      },
      inFlight: () => this.scheduler.runners.totalLoad(),
      threads: () => this.scheduler.runners.threads().total,
      queued: () => this.scheduler.queue.size,
    });
    this.scheduler = new Scheduler({
      name: this.name,
      options: this.options,
      backend: this.backend,
      bootTimeout: this.options.bootTimeout ?? this.backend.defaultBootTimeout ?? DEFAULT_BOOT_TIMEOUT,
      appVersion: appVersion(this.options.entry),
      log: this.log,
      metrics: this.metrics,
    });
    // A runner's copy of the pool keeps no runners: it has nothing to gauge.
    if (!isRunner()) this.metrics.attach();
    registerPool(this);
  }

  /**
   * Registers `fn` under a stable `id` and returns a function that runs it on a
   * runner with the same arguments. Inside `fn`, `currentCall()` gives the
   * call's signal, runner and deadline.
   */
  define<Args extends unknown[], Result>(id: string, fn: (...args: Args) => Result): RemoteFunction<Args, Result> {
    if (typeof id !== "string" || !/^[^\s]{1,200}$/.test(id)) {
      throw new InvalidOptionError(`pool "${this.name}": function id must be a non-empty string without spaces, got ${JSON.stringify(id)}`);
    }
    if (typeof fn !== "function") {
      throw new InvalidOptionError(`pool "${this.name}": define("${id}") needs a function, got ${typeof fn}`);
    }
    if (this.functions.has(id)) {
      throw new InvalidOptionError(`pool "${this.name}" already has a function "${id}": ids must be unique`);
    }
    this.functions.set(id, fn);
    const defined = ((...args: unknown[]) => this.call(defined as AnyDefinedFunction, args as never)) as unknown as RemoteFunction<Args, Result>;
    Object.defineProperties(defined, {
      functionId: { value: id, enumerable: true },
      poolName: { value: this.name, enumerable: true },
      name: { value: id },
    });
    return defined;
  }

  /** Boots the `min` runners and resolves once they are connected (or rejects with the first boot error). */
  async start(): Promise<void> {
    this.assertRunning();
    if (!isRunner()) await this.backend.checkPermissions?.();
    await this.scheduler.growToMin();
  }

  /** Runs `fn` on a runner and resolves with its result. */
  call<F extends AnyRemoteFunction>(fn: F, args: Parameters<F>, options?: CallOptions): ReturnType<F> {
    return this.submit(fn, args, options, false) as ReturnType<F>;
  }

  /** Runs `fn` on a runner without waiting. Failures go to the log and `onCastError`, never to an unhandled rejection. */
  cast<F extends AnyRemoteFunction>(fn: F, args: Parameters<F>, options?: CallOptions): void {
    this.submit(fn, args, options, false).catch((error: Error) => {
      const functionId = isDefinedFunction(fn) ? fn.functionId : String(fn.name);
      this.log.warn({ err: error, functionId }, `cast of "${functionId}" failed: ${error.message}`);
      try {
        this.options.onCastError?.(error, { functionId });
      } catch (hookError) {
        this.log.error({ err: hookError }, "onCastError threw");
      }
    });
  }

  /**
   * Starts a long-lived task on a runner. It holds one slot there and keeps the
   * runner from idling down until it ends. `stop()` or the signal aborts it.
   */
  placeChild<F extends AnyRemoteFunction>(
    fn: F,
    args: Parameters<F>,
    options?: { signal?: AbortSignal },
  ): Promise<PlacedChild<Awaited<ReturnType<F>>>> {
    return startChild((signal, onPlaced) => this.submit(fn, args, { signal, timeout: Infinity }, true, onPlaced), options?.signal);
  }

  /** Changes min and max at runtime. Growing boots to the new min; shrinking retires idle runners first and never fails calls. */
  async resize(options: ResizeOptions): Promise<void> {
    this.assertRunning();
    const { min, max } = resolveResize(options, this.scheduler.currentLimits, this.name);
    await this.scheduler.resize({ min: isRunner() ? 0 : min, max });
  }

  /** Counts of runners, boots, calls and the queue, and summaries of queue waits and call durations, for dashboards and tests. */
  stats(): PoolStats {
    return {
      runners: this.scheduler.runners.countByState(),
      boots: { ...this.scheduler.bootCounts },
      inFlight: this.scheduler.runners.totalLoad(),
      queued: this.scheduler.queue.size,
      completed: this.completed,
      failed: this.failed,
      queueWait: this.scheduler.queueWait.snapshot(),
      callDuration: this.callDuration.snapshot(),
      threads: this.scheduler.runners.threads(),
    };
  }

  /**
   * Stops taking calls, lets in-flight calls finish for up to `shutdownTimeout`,
   * then terminates every runner through the backend.
   */
  stop(): Promise<void> {
    this.stopping ??= this.scheduler.stop().then(() => {
      this.metrics.detach();
      unregisterPool(this);
    });
    return this.stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /**
   * Destroys runners of this pool that the backend still lists but this parent
   * does not know: the leftovers of a parent that crashed. Several parent
   * replicas running the same pool name would reap each other's runners: give
   * each replica its own pool name, or pass the dead parent's `parentId`.
   */
  async reap(options: { parentId?: string } = {}): Promise<string[]> {
    const listed = await this.backend.list({ pool: this.name });
    const orphans = listed.filter(
      (runner) => !this.scheduler.runners.has(runner.runnerId) && (options.parentId === undefined || runner.parentId === options.parentId),
    );
    await Promise.all(orphans.map((runner) => this.backend.terminate({ runnerId: runner.runnerId, providerId: runner.providerId })));
    return orphans.map((runner) => runner.runnerId);
  }

  // ---- RegisteredPool: used by the runner agent -----------------------------

  /** @internal */
  lookupFunction(functionId: string): ((...args: any[]) => unknown) | undefined {
    return this.functions.get(functionId);
  }

  /** @internal */
  async runIdleCheck(): Promise<boolean> {
    return this.options.idleCheck ? Boolean(await this.options.idleCheck()) : true;
  }

  // ---- calls ----------------------------------------------------------------

  private submit(
    fn: AnyRemoteFunction,
    args: unknown[],
    options: CallOptions | undefined,
    child: boolean,
    onPlaced?: (runner: Runner) => void,
  ): Promise<unknown> {
    if (!isDefinedFunction(fn) || fn.poolName !== this.name) {
      return this.refuse(new InvalidOptionError(`pool "${this.name}" can only call functions it defined with pool.define()`));
    }
    if (!Array.isArray(args)) return this.refuse(new InvalidOptionError(`pool "${this.name}": arguments of "${fn.functionId}" must be an array`));
    // Checked per call, so a subscriber that comes later sees the calls from then on.
    if (!callChannelHasSubscribers()) return this.startCall(fn.functionId, args, options, child, onPlaced);
    const context: CallChannelContext = { pool: this.name, functionId: fn.functionId, argsLength: args.length, child };
    return callChannel.tracePromise(() => this.startCall(fn.functionId, args, options, child, onPlaced, context), context);
  }

  private startCall(
    functionId: string,
    args: unknown[],
    options: CallOptions | undefined,
    child: boolean,
    onPlaced: ((runner: Runner) => void) | undefined,
    channelContext?: CallChannelContext,
  ): Promise<unknown> {
    let trace: CallTrace | undefined;
    let meter: CallMeter | undefined;
    try {
      const callOptions = resolveCallOptions(options);
      this.assertRunning();
      if (callsAreUnguarded()) throw new UnguardedCallError(functionId);
      if (callOptions.signal?.aborted) throw new CallAbortedError(functionId, callOptions.signal.reason);
      const callId = this.nextCallId++;
      const timeout = callOptions.timeout ?? this.options.timeout;
      trace = CallTrace.start({ pool: this.name, functionId });
      meter = this.metrics.startCall(functionId);
      const traceContext = trace?.traceContext;
      const frame = encodeMessage({ type: "call", callId, functionId, args, child, timeout, ...(traceContext ? { traceContext } : {}) });
      return new Promise((resolve, reject) => {
        const call: PendingCall = new PendingCall({
          callId,
          functionId,
          frame,
          poolName: this.name,
          child,
          executionTimeout: timeout,
          deadlines: this.deadlines,
          resolve: (value) => {
            this.completed += 1;
            this.callDuration.record(call.duration!);
            resolve(value);
          },
          reject: (error) => {
            this.failed += 1;
            this.callDuration.record(call.duration!);
            reject(error);
          },
          onGiveUp: (pending, reason) => this.scheduler.giveUp(pending, reason),
          signal: callOptions.signal,
          onPlaced,
          trace,
          meter,
          channelContext,
        });
        this.scheduler.submit(call);
      });
    } catch (error) {
      trace?.finished(error as Error);
      meter?.finished(0, error as Error);
      return this.refuse(error);
    }
  }

  /** A call that fails before it is made: counted, and returned as a rejection (calls never throw). */
  private refuse(error: unknown): Promise<never> {
    this.failed += 1;
    return Promise.reject(error);
  }

  private assertRunning(): void {
    if (!this.scheduler.accepting) throw new PoolStoppedError(this.name);
  }
}

