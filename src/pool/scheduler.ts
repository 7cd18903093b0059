/**
 * The pool's engine: which runner takes a call, when to boot (one runner per
 * `maxConcurrency` waiting callers, within `max`, with backoff after failed
 * boots), and when a runner goes (idle, single use, resize, stuck, stop).
 * The public Pool (pool.ts) validates and encodes calls and hands them here;
 * runner connections live in runner.ts, boots in boot.ts.
 */
import type { Backend } from "../backends/backend.js";
import { ControlPlane } from "../control-plane/listener.js";
import { BootError, FlameError, PoolStoppedError, QueueFullError, QueueTimeoutError } from "../errors.js";
import { childLogger, type Logger } from "../log.js";
import { parentId } from "../runtime.js";
import { BootBackoff } from "./boot-backoff.js";
import { bootRunner, failedOnTheRunner, failureSignature, isRetryable } from "./boot.js";
import type { ResolvedPoolOptions, ShrinkReason } from "./options.js";
import type { PendingCall } from "./pending-call.js";
import { Runner, type RunnerEvents, type RunnerState } from "./runner.js";
import { RunnerSet } from "./runner-set.js";
import { bootEndChannel, bootStartChannel, runnerExitChannel, shrinkChannel } from "../observability/channels.js";
import type { PoolMetrics } from "../observability/metrics.js";
import { BootTrace } from "../observability/boot-trace.js";
import { DurationSummary } from "../observability/duration-summary.js";
import type { TraceContextCarrier } from "../protocol/messages.js";
import type { RunnerThreads } from "../protocol/runner-env.js";

/** How long the parent waits for a runner's idle check to answer; silence means yes. */
const IDLE_CHECK_TIMEOUT = 5_000;

export interface SchedulerSettings {
  name: string;
  /** The pool's options, resolved once and read-only; min and max start here and change through resize(). */
  options: Readonly<ResolvedPoolOptions>;
  backend: Backend;
  bootTimeout: number;
  appVersion: string;
  log: Logger;
  /** The pool's metrics: the Scheduler records its boots there. */
  metrics?: PoolMetrics;
  /**
   * @internal How one runner boots; by default through the backend and the
   * control plane. Tests of the Scheduler's policies give a fake that attaches
   * a fake connection, so they run in milliseconds under fake timers.
   * `traceContext` is the boot span's, for the runner's start environment.
   */
  launch?: (runner: Runner, signal: AbortSignal, traceContext: TraceContextCarrier | undefined) => Promise<void>;
}

export class Scheduler {
  readonly runners = new RunnerSet();
  readonly queue = new Set<PendingCall>();
  /** Boots since the pool was made: started = succeeded + failed + those still in progress. */
  readonly bootCounts = { started: 0, succeeded: 0, failed: 0 };
  /** How long placed calls waited for a runner, in ms (0 for a call placed at once). */
  readonly queueWait = new DurationSummary();
  /** The pool's one lifecycle: running takes calls; stopping drains; stopped is over. */
  private lifecycle: "running" | "stopping" | "stopped" = "running";
  private stopped: Promise<void> | undefined;
  private readonly limits: { min: number; max: number };
  private readonly name: string;
  private readonly options: Readonly<ResolvedPoolOptions>;
  private readonly backend: Backend;
  private readonly bootTimeout: number;
  private readonly appVersion: string;
  private readonly log: Logger;
  private readonly metrics: PoolMetrics | undefined;
  private readonly stopController = new AbortController();
  private readonly runnerEvents: RunnerEvents = {
    callFinished: (runner) => this.onCallFinished(runner),
    changed: (runner) => this.runners.update(runner),
    stuck: (runner, functionId) => this.onStuck(runner, functionId),
    exited: (runner, detail) => this.onRunnerExited(runner, detail),
  };
  private readonly backoff = new BootBackoff();
  private readonly launch: (runner: Runner, traceContext: TraceContextCarrier | undefined) => Promise<void>;
  private readonly boots = new Set<Promise<void>>();
  private controlPlane: Promise<ControlPlane> | undefined;
  private controlPlaneUrl: string | undefined;
  private nextRunnerNumber = 1;
  private drained: (() => void) | undefined;
  /**
   * Set when one of the min runners idled down (minIdleShutdownAfter): the pool
   * then stays below min, deliberately, until a call arrives or start()/resize().
   */
  private minHeldDown = false;

  constructor(settings: SchedulerSettings) {
    this.name = settings.name;
    this.options = settings.options;
    this.limits = { min: settings.options.min, max: settings.options.max };
    const launch = settings.launch;
    this.launch = launch
      ? (runner, traceContext) => launch(runner, this.stopController.signal, traceContext)
      : (runner, traceContext) => this.bootThroughControlPlane(runner, traceContext);
    this.backend = settings.backend;
    this.bootTimeout = settings.bootTimeout;
    this.appVersion = settings.appVersion;
    this.log = settings.log;
    this.metrics = settings.metrics;
  }

  /** Boots runners until `min` are booted or booting; resolves when those boots end. */
  async growToMin(): Promise<void> {
    this.minHeldDown = false;
    const boots: Promise<void>[] = [];
    while (this.runners.activeCount() < this.limits.min) boots.push(this.boot());
    await Promise.all(boots);
  }

  /** Whether the pool takes calls (not stopping or stopped). */
  get accepting(): boolean {
    return this.lifecycle === "running";
  }

  private get running(): boolean {
    return this.lifecycle === "running";
  }

  /** The current min and max. */
  get currentLimits(): { min: number; max: number } {
    return { ...this.limits };
  }

  /** Applies new limits: retires idle runners first, drains busy ones, boots to min. */
  async resize(limits: { min: number; max: number }): Promise<void> {
    this.limits.min = limits.min;
    this.limits.max = limits.max;
    let excess = this.runners.activeCount() - this.limits.max;
    const byLoad = [...this.runners.values()].filter((r) => r.state === "ready").sort((a, b) => a.load - b.load);
    for (const runner of byLoad) {
      if (excess <= 0) break;
      excess -= 1;
      if (runner.drain("resize")) void this.retire(runner, "resize");
    }
    for (const runner of this.runners.values()) this.armIdleTimer(runner);
    const grown = this.growToMin();
    this.dispatch();
    await grown;
  }

  /** Hands a new call to the least-loaded runner with a free slot, or queues it (the queue keeps FIFO order). */
  submit(call: PendingCall): void {
    this.minHeldDown = false;
    const runner = this.queue.size === 0 ? this.runners.leastLoaded(this.options.maxConcurrency) : undefined;
    if (runner) {
      this.place(call, runner);
    } else {
      this.enqueue(call);
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
      return new QueueTimeoutError({
        poolName: this.name,
        functionId: call.functionId,
        waited: this.bootTimeout,
        lastBootFailure: this.backoff.lastError,
        detail: this.whyNoRunner(),
      });
    });
    this.scale();
  }

  /** Explains a queue timeout besides the last boot failure: runners that have not connected yet, or a full pool. */
  private whyNoRunner(): string | undefined {
    const booting = this.runners.bootingIds();
    if (booting.length > 0) {
      return `runner(s) ${booting.join(", ")} (${this.backend.name} backend) have not connected back to the parent at ${this.controlPlaneUrl ?? "(listener not started)"}`;
    }
    const active = this.runners.activeCount();
    if (active >= this.limits.max) return `all ${active} runners (max ${this.limits.max}) stayed busy`;
    return undefined;
  }

  private place(call: PendingCall, runner: Runner): void {
    runner.startCall(call, call.frame);
    // A single-use runner takes nothing after its one call.
    if (this.options.singleUse) runner.drain("single-use");
    this.queueWait.record(call.placed(runner));
  }

  /** The caller gave up: dequeue the call, or cancel it on its runner. */
  giveUp(call: PendingCall, reason: "timeout" | "aborted"): void {
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
    if (!this.running || this.backoff.waiting) return;
    const min = this.minHeldDown ? 0 : this.limits.min;
    let active = this.runners.activeCount();
    // The common case on the per-call path: nobody waits and min is met.
    if (this.queue.size === 0 && active >= min) return;
    const perRunner = this.options.singleUse ? 1 : this.options.maxConcurrency;
    let needed = Math.ceil(this.queue.size / perRunner) - this.runners.bootingCount();
    while ((needed > 0 || active < min) && active < this.limits.max) {
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
    callHook(this.log, "onGrowStart", () => this.options.onGrowStart?.(info));
    this.log.debug({ runnerId }, "booting runner");
    const startedAt = Date.now();
    const backend = this.backend.name;
    bootStartChannel.publish(() => ({ pool: this.name, runnerId, backend }));
    this.bootCounts.started += 1;
    const trace = BootTrace.start(runner, { pool: this.name, runnerId, backend });
    const booting = this.launch(runner, trace?.traceContext)
      .then(
        () => {
          this.bootCounts.succeeded += 1;
          trace?.ended();
          this.backoff.succeeded(Date.now() - startedAt);
          bootEndChannel.publish(() => ({ pool: this.name, runnerId, backend, outcome: "ok", duration: Date.now() - startedAt }));
          this.metrics?.bootEnded(Date.now() - startedAt);
          callHook(this.log, "onGrowEnd", () => this.options.onGrowEnd?.({ ok: true }, info));
          this.log.debug({ runnerId }, "runner connected");
          if (!this.running) return this.retire(runner, "stopped");
          this.armIdleTimer(runner);
          this.dispatch();
        },
        (error: Error) => {
          this.bootCounts.failed += 1;
          trace?.ended(error);
          this.runners.delete(runner);
          bootEndChannel.publish(() => ({ pool: this.name, runnerId, backend, outcome: "error", duration: Date.now() - startedAt, error }));
          this.metrics?.bootEnded(Date.now() - startedAt, error);
          callHook(this.log, "onGrowEnd", () => this.options.onGrowEnd?.({ ok: false, error }, info));
          this.onBootFailed(error, Date.now() - startedAt, runnerId);
          throw error;
        },
      );
    // stop() waits for boots in progress, so nothing of this pool happens after it resolves.
    this.boots.add(booting);
    const forget = () => this.boots.delete(booting);
    booting.then(forget, forget);
    return booting;
  }

  /** Boots one runner through the backend and the control plane (boot.ts). */
  private async bootThroughControlPlane(runner: Runner, traceContext: TraceContextCarrier | undefined): Promise<void> {
    await bootRunner(runner, { ...(await this.bootContext()), ...(traceContext ? { traceContext } : {}) });
  }

  private async bootContext() {
    if (!this.controlPlane) {
      this.controlPlane = Promise.resolve(this.backend.controlPlane?.()).then((address) => ControlPlane.acquire(address, this.log));
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
      threads: runnerThreads(this.options),
      log: this.log,
      signal: this.stopController.signal,
      // The control plane has logged it: the session is not to be trusted, so it ends and is replaced.
      onTokenReused: (runner: Runner) => void this.retire(runner, "token-reused"),
    };
  }

  /**
   * A failed boot is retried with exponential backoff while waiting callers can
   * still be served within their deadline; callers it cannot serve in time, or
   * all of them when the failure is not retryable, get the boot error now.
   */
  private onBootFailed(error: Error, duration: number, runnerId: string): void {
    if (!this.running) return;
    const delay = this.backoff.failed(error, duration, failureSignature(error, runnerId));
    // The runner failed the same way twice in a row (its entry throws, it crashes at start):
    // the next attempt runs the same code, so callers get the reason now, not after a dozen tries.
    const final = this.backoff.repeated && failedOnTheRunner(error);
    const retryable = isRetryable(error) && !final;
    // Logged once: the same failure again is only worth a debug line.
    if (this.backoff.repeated) this.log.debug({ err: error }, `runner boot failed the same way again: ${error.message}`);
    else this.log.warn({ err: error }, `runner boot failed${retryable ? ", will retry" : ""}: ${error.message}`);
    const othersCanServe = this.runners.activeCount() > 0;
    if (!retryable) {
      if (!othersCanServe) this.failQueued(error);
      // A runner failure may yet clear (a dependency comes back): min keeps trying, slowly.
      if (final) this.backoff.schedule(delay, () => this.scale());
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
      if (runner.liveCalls === 0) void this.retire(runner, runner.leaveReason ?? "resize");
      return;
    }
    if (!this.running) {
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
    if (runner.drain("stuck")) void this.retire(runner, "stuck");
    this.scale();
  }

  /** Starts (or restarts) the idle countdown of a runner that has nothing to do. */
  private armIdleTimer(runner: Runner): void {
    if (!this.running) return runner.stopIdleCountdown();
    const extra = this.runners.activeCount() > this.limits.min;
    const after = extra ? this.options.idleShutdownAfter : this.options.minIdleShutdownAfter;
    runner.startIdleCountdown(after, this.onIdleHandler);
  }

  private readonly onIdleHandler = (runner: Runner) => void this.onIdle(runner);

  private async onIdle(runner: Runner): Promise<void> {
    if (runner.state !== "ready" || runner.load > 0 || !this.running) return;
    const extra = this.runners.activeCount() > this.limits.min;
    if (!extra && runner.idleFor < this.options.minIdleShutdownAfter) return this.armIdleTimer(runner);
    // Out of routing before asking, so no call can land on a runner that is deciding to go.
    runner.drain("idle");
    const agrees = this.options.idleCheck ? await runner.askIdleCheck(IDLE_CHECK_TIMEOUT) : true;
    // While it asked, the runner may have died, been stuck or been stopped: then that decides.
    if (runner.leaveReason !== "idle" || (runner.state as RunnerState) !== "draining") return;
    if (!agrees) {
      runner.resume();
      this.log.debug({ runnerId: runner.id }, "idle check kept the runner up");
      this.armIdleTimer(runner);
      this.dispatch();
      return;
    }
    // A min runner idling down is deliberate: it is not replaced until there is demand.
    if (!extra) this.minHeldDown = true;
    await this.retire(runner, "idle");
  }

  /** Shuts a runner down through the backend; it leaves the pool with `reason`. */
  private async retire(runner: Runner, reason: ShrinkReason): Promise<void> {
    if (!runner.beginStopping(reason)) return;
    shrinkChannel.publish(() => ({ pool: this.name, runnerId: runner.id, reason }));
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
    void this.controlPlane?.then((plane) => plane.forget(runner.id), () => undefined);
    const reason: ShrinkReason = runner.leaveReason ?? "exited";
    const expected = runner.leaveReason !== undefined;
    if (!expected) void this.terminate(runner);
    if (!expected) this.log.warn({ runnerId: runner.id }, `runner exited unexpectedly: ${detail}`);
    runnerExitChannel.publish(() => ({ pool: this.name, runnerId: runner.id, reason, expected, detail }));
    callHook(this.log, "onShrink", () =>
      this.options.onShrink?.({ name: this.name, count: this.runners.size, runnerId: runner.id, reason }),
    );
    if (!this.running) {
      if (this.runners.totalLoad() === 0) this.drained?.();
      return;
    }
    // Queued calls go to other runners; replacements keep the pool at min (unless min is held down).
    this.dispatch();
  }

  /**
   * Stops: fails queued calls, aborts boots, lets calls finish for up to
   * shutdownTimeout, retires every runner. Idempotent: every caller gets the same promise.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown().then(() => {
      this.lifecycle = "stopped";
    });
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.lifecycle = "stopping";
    this.backoff.cancel();
    for (const call of this.queue) call.fail(new PoolStoppedError(this.name));
    this.queue.clear();
    this.stopController.abort();
    for (const runner of this.runners.values()) {
      runner.stopIdleCountdown();
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
  }

}

/** User hooks never break the pool: their exceptions are logged. */
export function callHook(log: Logger, name: string, run: () => void): void {
  try {
    run();
  } catch (error) {
    log.error({ err: error }, `${name} hook threw: ${(error as Error).message}`);
  }
}

/** What a runner is told about worker threads: nothing when its calls run on its main thread. */
function runnerThreads(options: Pick<ResolvedPoolOptions, "runnerThreads" | "threadResourceLimits" | "abortGracePeriod">): RunnerThreads | undefined {
  if (options.runnerThreads === 1) return undefined;
  return {
    count: options.runnerThreads,
    abortGracePeriod: options.abortGracePeriod,
    ...(options.threadResourceLimits ? { resourceLimits: { ...options.threadResourceLimits } } : {}),
  };
}
