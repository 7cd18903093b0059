/**
 * A runner's worker threads (pool option `runnerThreads`), as its agent sees
 * them: a CallHost that spreads calls over the threads, least loaded first,
 * while the connection to the parent stays on the main thread.
 *
 * A thread is a unit of failure of its own: one that crashes (an uncaught
 * exception, `process.exit`, out of memory under its resource limits) fails
 * only the calls it was running, with a typed error, and is replaced; one
 * still running a cancelled call `abortGracePeriod` after the cancel arrived
 * is terminated and replaced. The parent's own stuck-call check, which
 * retires the whole runner, waits longer for a runner with threads, so it is
 * the backstop for a main thread that cannot act, not the rule.
 */
import { Worker } from "node:worker_threads";
import type { DecodedCall } from "../../protocol/codec.js";
import type { CancelMessage, ResultMessage, SerializedError, TraceContextCarrier } from "../../protocol/messages.js";
import type { ThreadResourceLimits } from "../../protocol/runner-env.js";
import { serializeError } from "../../protocol/serialized-error.js";
import { threadEntry } from "../../package-paths.js";
import type { CallHost } from "../call-host.js";
import { encodeResult } from "../call-execution.js";
import type { FromThread, ThreadStart, ToThread } from "./messages.js";

/** A line a worker thread wrote, for the runner to write locally and forward. */
export type ThreadOutput = Omit<Extract<FromThread, { type: "output" }>, "type">;

export interface ThreadSetOptions {
  count: number;
  runnerId: string;
  pool: string;
  entry: string | undefined;
  abortGracePeriod: number;
  resourceLimits?: ThreadResourceLimits | undefined;
  /** The boot span's trace context: the first thread records the entry's load under it. */
  traceContext?: TraceContextCarrier | undefined;
  /** A line thread `thread` wrote. */
  output(thread: number, line: ThreadOutput): void;
  /** Diagnostics of the runner itself (a thread replaced, and why). */
  report(message: string): void;
  /** A thread could not be replaced: the runner cannot go on as configured and must end. */
  failed(detail: string): void;
}

/** How the threads' first start went: what the runner's hello reports. */
export interface ThreadsReady {
  poolDefined: boolean;
  entryError?: string;
}

interface RunningCall {
  callId: number;
  functionId: string;
  resolve(frame: Buffer): void;
  graceTimer?: NodeJS.Timeout;
}

/** A call waiting for a thread (every thread is being replaced). */
interface WaitingCall extends RunningCall {
  frame: ArrayBuffer;
}

type StartOutcome = { poolDefined: boolean } | { entryError: string };

/** One worker thread, and the calls it runs. */
class RunnerThread {
  readonly worker: Worker;
  state: "starting" | "ready" | "ended" = "starting";
  readonly calls = new Map<number, RunningCall>();
  readonly idleReplies = new Map<number, (shutdown: boolean) => void>();
  /** Set when the thread is being terminated on purpose: what its calls are told. */
  stopReason: string | undefined;
  /** The call that ignored its cancellation, when that is why the thread is stopped. */
  stuckCallId: number | undefined;
  /** What the thread threw, if it died of an error. */
  error: Error | undefined;
  readonly started: Promise<StartOutcome>;
  private settleStart!: (outcome: StartOutcome) => void;

  constructor(
    readonly number: number,
    start: ThreadStart,
    resourceLimits: ThreadResourceLimits | undefined,
  ) {
    this.started = new Promise((resolve) => (this.settleStart = resolve));
    const entry = threadEntry();
    this.worker = new Worker(entry.script, {
      eval: entry.eval,
      workerData: start,
      // Its output comes as lines through messages (thread-main.ts), with levels and trace ids;
      // the raw streams are drained, or Node would copy every byte into this thread's own stdout.
      stdout: true,
      stderr: true,
      ...(resourceLimits ? { resourceLimits } : {}),
    });
    this.worker.stdout.resume();
    this.worker.stderr.resume();
  }

  /** The thread loaded the entry module (or could not). */
  startEnded(outcome: StartOutcome): void {
    if (this.state === "starting" && "poolDefined" in outcome) this.state = "ready";
    this.settleStart(outcome);
  }

  post(message: ToThread, transfer?: ArrayBuffer[]): void {
    this.worker.postMessage(message, transfer);
  }
}

export class ThreadSet implements CallHost {
  readonly decodesArgs = false;
  private readonly slots: RunnerThread[] = [];
  /** Which thread runs each call. */
  private readonly placement = new Map<number, RunnerThread>();
  private readonly waiting: WaitingCall[] = [];
  private nextCheckId = 1;
  private closed = false;
  private poolIsDefined = false;
  /** Settles once every thread has started for the first time (or one failed to). */
  readonly ready: Promise<ThreadsReady>;

  constructor(private readonly options: ThreadSetOptions) {
    for (let number = 1; number <= options.count; number += 1) this.slots.push(this.spawn(number, number === 1 ? options.traceContext : undefined));
    this.ready = Promise.all(this.slots.map((thread) => thread.started)).then((outcomes) => {
      const failure = outcomes.find((outcome): outcome is { entryError: string } => "entryError" in outcome);
      if (failure) return { poolDefined: false, entryError: failure.entryError };
      this.poolIsDefined = outcomes.every((outcome) => "poolDefined" in outcome && outcome.poolDefined);
      return { poolDefined: this.poolIsDefined };
    });
  }

  get threads(): number {
    return this.options.count;
  }

  poolDefined(): boolean {
    return this.poolIsDefined;
  }

  isRunning(callId: number): boolean {
    return this.placement.has(callId) || this.waiting.some((call) => call.callId === callId);
  }

  /** Calls in flight on each thread, in thread order (for diagnostics and tests). */
  loads(): number[] {
    return this.slots.map((thread) => thread.calls.size);
  }

  run(call: DecodedCall, frame: Buffer): Promise<Buffer> {
    // The frame is a view into ws' read buffer: the thread gets a copy it owns, moved rather than cloned.
    const bytes = new Uint8Array(frame.byteLength);
    bytes.set(frame);
    return new Promise((resolve) => {
      const waiting: WaitingCall = { callId: call.callId, functionId: call.functionId, resolve, frame: bytes.buffer };
      if (this.closed) return resolve(this.failure(call.callId, { kind: "aborted", name: "AbortError", message: "the runner is stopping" }));
      const thread = this.leastLoaded();
      if (thread) this.dispatch(thread, waiting);
      else this.waiting.push(waiting);
    });
  }

  cancel(callId: number, reason: CancelMessage["reason"]): void {
    const thread = this.placement.get(callId);
    if (!thread) {
      const index = this.waiting.findIndex((call) => call.callId === callId);
      if (index === -1) return;
      const [waiting] = this.waiting.splice(index, 1);
      waiting!.resolve(this.failure(callId, { kind: "aborted", name: "AbortError", message: `call cancelled by the parent (${reason}) before a thread took it` }));
      return;
    }
    const call = thread.calls.get(callId);
    if (!call || call.graceTimer) return;
    thread.post({ type: "cancel", callId, reason });
    call.graceTimer = setTimeout(() => this.stuck(thread, call), this.options.abortGracePeriod);
    call.graceTimer.unref();
  }

  async idleCheck(): Promise<boolean> {
    const replies = this.slots
      .filter((thread) => thread.state === "ready")
      .map(
        (thread) =>
          new Promise<boolean>((resolve) => {
            const checkId = this.nextCheckId++;
            thread.idleReplies.set(checkId, (shutdown) => {
              thread.idleReplies.delete(checkId);
              resolve(shutdown);
            });
            thread.post({ type: "idle-check", checkId });
          }),
      );
    // Each thread has its own copy of the app's state: the runner stays up if any of them says so.
    return (await Promise.all(replies)).every(Boolean);
  }

  close(reason: Error): void {
    if (this.closed) return;
    this.closed = true;
    const aborted: SerializedError = { kind: "aborted", name: "AbortError", message: reason.message };
    for (const call of this.waiting.splice(0)) call.resolve(this.failure(call.callId, aborted));
    for (const thread of this.slots) {
      thread.stopReason = reason.message;
      void thread.worker.terminate();
    }
  }

  private spawn(number: number, traceContext: TraceContextCarrier | undefined): RunnerThread {
    const { runnerId, pool, entry } = this.options;
    const thread = new RunnerThread(number, { thread: number, runnerId, pool, entry, ...(traceContext ? { traceContext } : {}) }, this.options.resourceLimits);
    thread.worker.on("message", (message: FromThread) => this.receive(thread, message));
    thread.worker.on("error", (error) => {
      thread.error = error;
    });
    thread.worker.on("exit", (code) => this.exited(thread, code));
    return thread;
  }

  private receive(thread: RunnerThread, message: FromThread): void {
    switch (message.type) {
      case "result": {
        const call = thread.calls.get(message.callId);
        if (!call) return;
        this.finished(thread, call);
        call.resolve(Buffer.from(message.frame));
        return;
      }
      case "output":
        this.options.output(thread.number, message);
        return;
      case "idle-check-reply":
        thread.idleReplies.get(message.checkId)?.(message.shutdown);
        return;
      case "ready":
        thread.startEnded({ poolDefined: message.poolDefined });
        this.dispatchWaiting();
        return;
      case "entry-failed":
        thread.startEnded({ entryError: message.error });
        return;
    }
  }

  private leastLoaded(): RunnerThread | undefined {
    let best: RunnerThread | undefined;
    for (const thread of this.slots) {
      if (thread.state === "ready" && (!best || thread.calls.size < best.calls.size)) best = thread;
    }
    return best;
  }

  private dispatch(thread: RunnerThread, call: WaitingCall): void {
    const { frame, ...running } = call;
    thread.calls.set(call.callId, running);
    this.placement.set(call.callId, thread);
    thread.post({ type: "call", callId: call.callId, frame }, [frame]);
  }

  private dispatchWaiting(): void {
    for (let thread = this.leastLoaded(); thread && this.waiting.length > 0; thread = this.leastLoaded()) {
      this.dispatch(thread, this.waiting.shift()!);
    }
  }

  private finished(thread: RunnerThread, call: RunningCall): void {
    thread.calls.delete(call.callId);
    this.placement.delete(call.callId);
    clearTimeout(call.graceTimer);
  }

  /** A cancelled call still runs after the grace period: the thread is terminated (and replaced when it has exited). */
  private stuck(thread: RunnerThread, call: RunningCall): void {
    if (thread.state === "ended" || !thread.calls.has(call.callId)) return;
    const detail = `"${call.functionId}" kept running past abortGracePeriod (${this.options.abortGracePeriod} ms) after it was cancelled`;
    this.options.report(`thread ${thread.number}: ${detail}; terminating and replacing the thread`);
    thread.stopReason = `the thread was terminated because ${detail}`;
    thread.stuckCallId = call.callId;
    void thread.worker.terminate();
  }

  private exited(thread: RunnerThread, code: number): void {
    const wasReady = thread.state === "ready";
    thread.state = "ended";
    const detail = thread.stopReason ?? describeExit(thread.error, code);
    for (const call of [...thread.calls.values()]) {
      this.finished(thread, call);
      const kind = call.callId === thread.stuckCallId ? "aborted" : "thread-exited";
      call.resolve(
        this.failure(call.callId, {
          kind,
          name: "ThreadExitedError",
          message: detail,
          properties: { thread: thread.number },
          cause: thread.error ? serializeError(thread.error) : undefined,
        }),
      );
    }
    for (const reply of [...thread.idleReplies.values()]) reply(true);
    if (!wasReady) {
      // It never started: the entry module could not load in it. At boot the runner's hello
      // reports it; for a replacement, replace() ends the runner.
      thread.startEnded({ entryError: `thread ${thread.number} ended while loading the entry module: ${detail}` });
      return;
    }
    if (this.closed) return;
    if (!thread.stopReason) this.options.report(`thread ${thread.number} ended: ${detail}; replacing it`);
    this.replace(thread);
  }

  private replace(thread: RunnerThread): void {
    const replacement = this.spawn(thread.number, undefined);
    this.slots[thread.number - 1] = replacement;
    void replacement.started.then((outcome) => {
      if ("entryError" in outcome && !this.closed) this.options.failed(`thread ${thread.number} could not be restarted: ${outcome.entryError}`);
    });
  }

  private failure(callId: number, error: SerializedError): Buffer {
    const result: ResultMessage = { type: "result", callId, ok: false, error };
    return encodeResult(result);
  }
}

function describeExit(error: Error | undefined, code: number): string {
  if (error && (error as NodeJS.ErrnoException).code === "ERR_WORKER_OUT_OF_MEMORY") {
    return `it ran out of memory (${error.message}; see the pool's threadResourceLimits)`;
  }
  if (error) return `it threw an uncaught exception: ${error.name}: ${error.message}`;
  return `it exited with code ${code} (process.exit inside the thread)`;
}
