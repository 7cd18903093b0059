/**
 * The Pool: the public face of flame-ts. It routes calls to the least-loaded
 * runner, queues callers when every runner is full, grows between `min` and
 * `max` (one boot per runner's worth of waiting callers), and shrinks runners
 * that sit idle. Runner connections live in runner.ts, boots in boot.ts,
 * per-call timers in pending-call.ts.
 */
import type { Backend } from "../backends/backend.js";
import { ProcessBackend } from "../backends/process.js";
import { ControlPlane } from "../control-plane/listener.js";
import { BootError, BootTimeoutError, CallAbortedError, FlameError, InvalidOptionError, PoolStoppedError, QueueFullError } from "../errors.js";
import { childLogger, resolveLogger, type Logger } from "../log.js";
import { encodeMessage } from "../protocol/codec.js";
import { DEFAULT_MAX_PAYLOAD } from "../protocol/messages.js";
import { appVersion, isRunner, parentId, registerPool, unregisterPool, type RegisteredPool } from "../runtime.js";
import { bootRunner, isRetryable } from "./boot.js";
import { isDefinedFunction, type AnyDefinedFunction, type CallArgs, type DefinedFunction } from "./function.js";
import {
  resolveCallOptions,
  resolvePoolOptions,
  resolveResize,
  type CallOptions,
  type PoolOptions,
  type ResizeOptions,
  type ResolvedPoolOptions,
  type ShrinkReason,
} from "./options.js";
import { PendingCall } from "./pending-call.js";
import { Runner, type RunnerEvents } from "./runner.js";
import { RunnerSet } from "./runner-set.js";
import { BootBackoff } from "./boot-backoff.js";
import { startChild, type PlacedChild } from "./child.js";

export interface PoolStats {
  /** Runners by state; `ready` runners are `busy` (running calls) or `idle`. */
  runners: { booting: number; ready: number; busy: number; idle: number; draining: number; stopping: number };
  /** Calls running on runners (placed children included). */
  inFlight: number;
  /** Callers waiting for a runner. */
  queued: number;
  /** Calls that returned a value. */
  completed: number;
  /** Calls that ended in an error (including timeouts and aborts). */
  failed: number;
}

const DEFAULT_BOOT_TIMEOUT = 30_000;
/** How long the parent waits for a runner's idle check to answer; silence means yes. */
const IDLE_CHECK_TIMEOUT = 5_000;

export class Pool implements RegisteredPool, AsyncDisposable {
  readonly name: string;
  private readonly options: ResolvedPoolOptions;
  private readonly log: Logger;
  private readonly functions = new Map<string, (...args: any[]) => unknown>();
  private readonly runners = new RunnerSet();
  private readonly queue = new Set<PendingCall>();
  private readonly stopController = new AbortController();
  private readonly runnerEvents: RunnerEvents;
  private backendInstance: Backend | undefined;
  private controlPlane: Promise<ControlPlane> | undefined;
  private controlPlaneUrl: string | undefined;
  private state: "running" | "stopping" | "stopped" = "running";
  private nextCallId = 1;
  private nextRunnerNumber = 1;
  private completed = 0;
  private failed = 0;
  private readonly backoff = new BootBackoff();
  private drained: (() => void) | undefined;
  private readonly boots = new Set<Promise<void>>();
  private stopped: Promise<void> = Promise.resolve();
  private readonly appVersion: string;

  private readonly bootTimeout: number;

  constructor(options: PoolOptions) {
    this.options = resolvePoolOptions(options);
    this.bootTimeout = this.options.bootTimeout ?? this.backend.defaultBootTimeout ?? DEFAULT_BOOT_TIMEOUT;
    this.name = this.options.name;
    // A pool constructed on a runner is the runner's copy of the definition: it never keeps runners of its own.
    if (isRunner()) this.options.min = 0;
    this.log = childLogger(resolveLogger(this.options.log), { pool: this.name });
    this.appVersion = appVersion(this.options.entry ?? process.argv[1]);
    this.runnerEvents = {
      callFinished: (runner) => this.onCallFinished(runner),
      stuck: (runner, functionId) => this.onStuck(runner, functionId),
      exited: (runner, detail) => this.onRunnerExited(runner, detail),
    };
    registerPool(this);
  }

  /** The backend runners boot on (a ProcessBackend unless one was given). */
  get backend(): Backend {
    return (this.backendInstance ??= this.options.backend ?? new ProcessBackend());
  }

  /**
   * Registers `fn` under a stable `id` and returns a function that runs it on a
   * runner. The context (signal, runnerId) is passed as the last argument.
   */
  define<F extends (...args: any[]) => unknown>(id: string, fn: F): DefinedFunction<F> {
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
    const defined = ((...args: unknown[]) => this.call(defined as AnyDefinedFunction, args as never)) as unknown as DefinedFunction<F>;
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
    const boots: Promise<void>[] = [];
    while (this.runners.activeCount() < this.options.min) boots.push(this.boot());
    await Promise.all(boots);
  }

  /** Runs `fn` on a runner and resolves with its result. */
  call<F extends AnyDefinedFunction>(fn: F, args: Parameters<F>, options?: CallOptions): ReturnType<F> {
    return this.submit(fn, args, options, false) as ReturnType<F>;
  }

  /** Runs `fn` on a runner without waiting. Failures go to the log and `onCastError`, never to an unhandled rejection. */
  cast<F extends AnyDefinedFunction>(fn: F, args: Parameters<F>, options?: CallOptions): void {
    this.submit(fn, args, options, false).catch((error: Error) => {
      this.log.warn({ err: error, functionId: fn.functionId }, `cast of "${fn.functionId}" failed: ${error.message}`);
      try {
        this.options.onCastError?.(error, { functionId: fn.functionId });
      } catch (hookError) {
        this.log.error({ err: hookError }, "onCastError threw");
      }
    });
  }

  /**
   * Starts a long-lived task on a runner. It holds one slot there and keeps the
   * runner from idling down until it ends. `stop()` or the signal aborts it.
   */
  placeChild<F extends AnyDefinedFunction>(
    fn: F,
    args: Parameters<F>,
    options?: { signal?: AbortSignal },
  ): Promise<PlacedChild<Awaited<ReturnType<F>>>> {
    return startChild((signal, onPlaced) => this.submit(fn, args, { signal, timeout: Infinity }, true, onPlaced), options?.signal);
  }

  /** Changes min and max at runtime. Growing boots to the new min; shrinking retires idle runners first and never fails calls. */
  async resize(options: ResizeOptions): Promise<void> {
    this.assertRunning();
    const { min, max } = resolveResize(options, this.options, this.name);
    this.options.min = isRunner() ? 0 : min;
    this.options.max = max;
    let excess = this.runners.activeCount() - max;
    const byLoad = [...this.runners.values()].filter((r) => r.state === "ready").sort((a, b) => a.load - b.load);
    for (const runner of byLoad) {
      if (excess <= 0) break;
      excess -= 1;
      if (runner.load === 0) void this.retire(runner, "resize");
      else {
        runner.state = "draining";
        runner.drainReason = "resize";
      }
    }
    for (const runner of this.runners.values()) this.armIdleTimer(runner);
    const boots: Promise<void>[] = [];
    while (this.runners.activeCount() < this.options.min) boots.push(this.boot());
    this.dispatch();
    await Promise.all(boots);
  }

  /** Counts of runners, calls and the queue, for dashboards and tests. */
  stats(): PoolStats {
    return {
      runners: this.runners.countByState(),
      inFlight: this.runners.totalLoad(),
      queued: this.queue.size,
      completed: this.completed,
      failed: this.failed,
    };
  }

  /**
   * Stops taking calls, lets in-flight calls finish for up to `shutdownTimeout`,
   * then terminates every runner through the backend.
   */
  async stop(): Promise<void> {
    if (this.state !== "running") return this.stopped;
    this.state = "stopping";
    this.stopped = this.shutdown();
    return this.stopped;
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
      (runner) => !this.runners.has(runner.runnerId) && (options.parentId === undefined || runner.parentId === options.parentId),
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
    fn: AnyDefinedFunction,
    args: unknown[],
    options: CallOptions | undefined,
    child: boolean,
    onPlaced?: (runner: Runner) => void,
  ): Promise<unknown> {
    try {
      if (!isDefinedFunction(fn) || fn.poolName !== this.name) {
        throw new InvalidOptionError(`pool "${this.name}" can only call functions it defined with pool.define()`);
      }
      if (!Array.isArray(args)) throw new InvalidOptionError(`pool "${this.name}": arguments of "${fn.functionId}" must be an array`);
      const callOptions = resolveCallOptions(options);
      this.assertRunning();
      if (callOptions.signal?.aborted) throw new CallAbortedError(fn.functionId, callOptions.signal.reason);
      const callId = this.nextCallId++;
      const frame = encodeMessage({ type: "call", callId, functionId: fn.functionId, args, child }, DEFAULT_MAX_PAYLOAD);
      return new Promise((resolve, reject) => {
        const call = new PendingCall(
          callId,
          fn.functionId,
          frame,
          this.name,
          child,
          callOptions.timeout ?? this.options.timeout,
          (value) => {
            this.completed += 1;
            resolve(value);
          },
          (error) => {
            this.failed += 1;
            reject(error);
          },
          (pending, reason) => this.giveUp(pending, reason),
          callOptions.signal,
          onPlaced,
        );
        const runner = this.queue.size === 0 ? this.runners.leastLoaded(this.options.maxConcurrency) : undefined;
        if (runner) this.place(call, runner);
        else this.enqueue(call);
      });
    } catch (error) {
      this.failed += 1;
      return Promise.reject(error);
    }
  }

  private enqueue(call: PendingCall): void {
    if (this.queue.size >= this.options.maxQueue) {
      call.fail(new QueueFullError(this.name, this.options.maxQueue));
      return;
    }
    this.queue.add(call);
    call.waitAtMost(this.bootTimeout, () => {
      this.queue.delete(call);
      return new BootTimeoutError(
        `no runner of pool "${this.name}" could take "${call.functionId}" within bootTimeout (${this.bootTimeout} ms)${this.whyNoRunner()}`,
        { cause: this.backoff.lastError },
      );
    });
    this.scale();
  }

  /** Explains a queue timeout: the last boot failure, or the runners that have not connected yet. */
  private whyNoRunner(): string {
    const booting = this.runners.bootingIds();
    if (booting.length > 0) {
      return `: runner(s) ${booting.join(", ")} (${this.backend.name} backend) have not connected back to the parent at ${this.controlPlaneUrl ?? "(listener not started)"}`;
    }
    return this.backoff.lastError ? `; the last boot failed: ${this.backoff.lastError.message}` : "";
  }

  private place(call: PendingCall, runner: Runner): void {
    runner.startCall(call, call.frame);
    clearTimeout(runner.idleTimer);
    runner.idleTimer = undefined;
    // A single-use runner takes nothing after its one call.
    if (this.options.singleUse) {
      runner.state = "draining";
      runner.drainReason = "single-use";
    }
    call.placed(runner);
  }

  private giveUp(call: PendingCall, reason: "timeout" | "aborted"): void {
    if (this.queue.delete(call)) return;
    call.runner?.cancelCall(call.callId, reason);
  }

  /** Hands queued calls to runners with free slots, oldest first, then grows if callers still wait. */
  private dispatch(): void {
    for (const call of this.queue) {
      const runner = this.runners.leastLoaded(this.options.maxConcurrency);
      if (!runner) break;
      this.queue.delete(call);
      this.place(call, runner);
    }
    this.scale();
  }

  // ---- growing --------------------------------------------------------------

  /** Boots what the queue and `min` need, within `max`, unless a failed boot is backing off. */
  private scale(): void {
    if (this.state !== "running" || this.backoff.waiting) return;
    let active = this.runners.activeCount();
    // The common case on the per-call path: nobody waits and min is met.
    if (this.queue.size === 0 && active >= this.options.min) return;
    const perRunner = this.options.singleUse ? 1 : this.options.maxConcurrency;
    let needed = Math.ceil(this.queue.size / perRunner) - this.runners.bootingCount();
    while ((needed > 0 || active < this.options.min) && active < this.options.max) {
      void this.boot().catch(() => undefined);
      needed -= 1;
      active += 1;
    }
  }

  private boot(): Promise<void> {
    const runnerId = `${this.name}-${(this.nextRunnerNumber++).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const runner = new Runner(runnerId, this.runnerEvents, childLogger(this.log, { runnerId }), this.options.abortGracePeriod);
    this.runners.add(runner);
    const info = { name: this.name, count: this.runners.activeCount(), runnerId };
    this.hook("onGrowStart", () => this.options.onGrowStart?.(info));
    this.log.debug({ runnerId }, "booting runner");
    const startedAt = Date.now();
    const booting = this.bootContext()
      .then((context) => bootRunner(runner, context))
      .then(
        () => {
          this.backoff.succeeded(Date.now() - startedAt);
          this.hook("onGrowEnd", () => this.options.onGrowEnd?.({ ok: true }, info));
          this.log.debug({ runnerId }, "runner connected");
          if (this.state !== "running") return this.retire(runner, "stopped");
          this.armIdleTimer(runner);
          this.dispatch();
        },
        (error: Error) => {
          this.runners.delete(runner);
          this.hook("onGrowEnd", () => this.options.onGrowEnd?.({ ok: false, error }, info));
          this.onBootFailed(error, Date.now() - startedAt);
          throw error;
        },
      );
    // stop() waits for boots in progress, so nothing of this pool happens after it resolves.
    this.boots.add(booting);
    const forget = () => this.boots.delete(booting);
    booting.then(forget, forget);
    return booting;
  }

  private async bootContext() {
    if (!this.controlPlane) {
      this.controlPlane = Promise.resolve(this.backend.controlPlane?.()).then((address) => ControlPlane.acquire(address));
      // A failed listen (port in use) must be retried by the next boot, not remembered.
      this.controlPlane.catch(() => (this.controlPlane = undefined));
    }
    const controlPlane = await this.controlPlane;
    this.controlPlaneUrl = controlPlane.url;
    return {
      backend: this.backend,
      controlPlane,
      pool: this.name,
      parentId: parentId(),
      entry: this.options.entry,
      appVersion: this.appVersion,
      bootTimeout: this.bootTimeout,
      runnerConnectTimeout: this.options.runnerConnectTimeout,
      heartbeatInterval: this.options.heartbeatInterval,
      log: this.log,
      signal: this.stopController.signal,
    };
  }

  /**
   * A failed boot is retried with exponential backoff while waiting callers can
   * still be served within their deadline; callers it cannot serve in time, or
   * all of them when the failure is not retryable, get the boot error now.
   */
  private onBootFailed(error: Error, duration: number): void {
    if (this.state !== "running") return;
    const delay = this.backoff.failed(error, duration);
    const retryable = isRetryable(error);
    this.log.warn({ err: error }, `runner boot failed${retryable ? ", will retry" : ""}: ${error.message}`);
    const othersCanServe = this.runners.activeCount() > 0;
    if (!retryable) {
      if (!othersCanServe) this.failQueued(error);
      return;
    }
    if (!othersCanServe) this.failQueued(error, Date.now() + delay + this.backoff.lastDuration);
    this.backoff.schedule(delay, () => this.scale());
  }

  /** Rejects queued calls whose wait would end before `before` (all when omitted) with the boot error. */
  private failQueued(error: Error, before = Infinity): void {
    for (const call of this.queue) {
      if (call.queueDeadline >= before) continue;
      this.queue.delete(call);
      call.fail(error instanceof FlameError ? error : new BootError(error.message, { cause: error }));
    }
  }

  // ---- shrinking ------------------------------------------------------------

  private onCallFinished(runner: Runner): void {
    if (runner.state === "draining") {
      if (runner.liveCalls === 0) void this.retire(runner, runner.drainReason ?? "resize");
      return;
    }
    if (this.state === "stopping") {
      if (this.runners.totalLoad() === 0) this.drained?.();
      return;
    }
    this.dispatch();
    this.armIdleTimer(runner);
  }

  private onStuck(runner: Runner, functionId: string): void {
    if (runner.state !== "ready" && runner.state !== "draining") return;
    this.log.warn(
      { runnerId: runner.id, functionId },
      `"${functionId}" kept running past abortGracePeriod (${this.options.abortGracePeriod} ms) after it was cancelled; draining and replacing its runner`,
    );
    runner.state = "draining";
    runner.drainReason = "stuck";
    if (runner.liveCalls === 0) void this.retire(runner, "stuck");
    this.scale();
  }

  /** Starts (or restarts) the idle countdown of a runner that has nothing to do. */
  private armIdleTimer(runner: Runner): void {
    clearTimeout(runner.idleTimer);
    runner.idleTimer = undefined;
    if (runner.state !== "ready" || runner.load > 0 || this.state !== "running") return;
    runner.idleSince = Date.now();
    const extra = this.runners.activeCount() > this.options.min;
    const after = extra ? this.options.idleShutdownAfter : this.options.minIdleShutdownAfter;
    if (!Number.isFinite(after)) return;
    runner.idleTimer = setTimeout(() => void this.onIdle(runner), after);
    runner.idleTimer.unref();
  }

  private async onIdle(runner: Runner): Promise<void> {
    runner.idleTimer = undefined;
    if (runner.state !== "ready" || runner.load > 0 || this.state !== "running") return;
    const extra = this.runners.activeCount() > this.options.min;
    const idleFor = Date.now() - runner.idleSince;
    if (!extra && idleFor < this.options.minIdleShutdownAfter) return this.armIdleTimer(runner);
    // Out of routing before asking, so no call can land on a runner that is deciding to go.
    runner.state = "draining";
    runner.drainReason = "idle";
    const agrees = this.options.idleCheck ? await runner.askIdleCheck(IDLE_CHECK_TIMEOUT) : true;
    if (runner.state !== "draining") return;
    if (!agrees) {
      runner.state = "ready";
      this.log.debug({ runnerId: runner.id }, "idle check kept the runner up");
      this.armIdleTimer(runner);
      this.dispatch();
      return;
    }
    await this.retire(runner, "idle");
  }

  /** Shuts a runner down through the backend; it leaves the pool with `reason`. */
  private async retire(runner: Runner, reason: ShrinkReason): Promise<void> {
    if (runner.state === "stopping" || runner.state === "exited") return;
    runner.state = "stopping";
    runner.drainReason = reason;
    clearTimeout(runner.idleTimer);
    runner.requestShutdown(reason);
    await this.terminate(runner);
    runner.markExited(`shut down (${reason})`);
  }

  private async terminate(runner: Runner): Promise<void> {
    if (!runner.provisioned) return;
    try {
      await this.backend.terminate(runner.provisioned);
    } catch (error) {
      this.log.error({ err: error, runnerId: runner.id }, `could not terminate runner: ${(error as Error).message}`);
    }
  }

  private onRunnerExited(runner: Runner, detail: string): void {
    this.runners.delete(runner);
    const expected = runner.state === "stopping" || runner.drainReason !== undefined;
    const reason: ShrinkReason = runner.drainReason ?? "exited";
    if (!expected) void this.terminate(runner);
    if (!expected) this.log.warn({ runnerId: runner.id }, `runner exited unexpectedly: ${detail}`);
    this.hook("onShrink", () =>
      this.options.onShrink?.({ name: this.name, count: this.runners.size, runnerId: runner.id, reason }),
    );
    if (this.state === "stopping") {
      if (this.runners.totalLoad() === 0) this.drained?.();
      return;
    }
    // Replacements keep the pool at min; an idle shutdown of a min runner is deliberate and not replaced.
    if (reason !== "idle") this.scale();
    this.dispatch();
  }

  private async shutdown(): Promise<void> {
    this.backoff.cancel();
    for (const call of this.queue) call.fail(new PoolStoppedError(this.name));
    this.queue.clear();
    this.stopController.abort();
    for (const runner of this.runners.values()) {
      clearTimeout(runner.idleTimer);
      runner.cancelChildren(new PoolStoppedError(this.name));
    }
    if (this.runners.totalLoad() > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.options.shutdownTimeout);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    // Booting runners were aborted above; their boots clean up after themselves.
    const booted = [...this.runners.values()].filter((runner) => runner.state !== "booting");
    await Promise.all(booted.map((runner) => this.retire(runner, "stopped")));
    await Promise.allSettled([...this.boots]);
    if (this.controlPlane) await (await this.controlPlane.catch(() => undefined))?.release();
    this.state = "stopped";
    unregisterPool(this);
  }

  private assertRunning(): void {
    if (this.state !== "running") throw new PoolStoppedError(this.name);
  }

  /** User hooks never break the pool: their exceptions are logged. */
  private hook(name: string, run: () => void): void {
    try {
      run();
    } catch (error) {
      this.log.error({ err: error }, `${name} hook threw: ${(error as Error).message}`);
    }
  }
}

export type { CallArgs };
