/**
 * What runs a runner's calls, seen from its agent (which owns the session
 * with the parent): the main thread itself (`InlineCalls`, the default), or a
 * set of worker threads (threads/thread-set.ts, pool option `runnerThreads`).
 * The agent decodes, routes and answers; a host only runs.
 */
import type { DecodedCall } from "../protocol/codec.js";
import type { CancelMessage } from "../protocol/messages.js";
import { CallCancellation } from "./call-context.js";
import { encodeResult, executeCall, type CallScope } from "./call-execution.js";

export interface CallHost {
  /** Whether the agent decodes a call's arguments (false: the host takes the raw frame and decodes them itself). */
  readonly decodesArgs: boolean;
  /** Worker threads running calls; 0 when they run on the main thread. */
  readonly threads: number;
  /** Whether the entry module defined the pool the runner was booted for. */
  poolDefined(): boolean;
  /** Whether `callId` is running here. */
  isRunning(callId: number): boolean;
  /**
   * Runs a call; gives its encoded result frame (at once for a call that
   * finished synchronously), never throws or rejects. `frame` is the call's
   * frame as it arrived.
   */
  run(call: DecodedCall, frame: Buffer): Buffer | Promise<Buffer>;
  /** The parent cancelled a call: its signal aborts. */
  cancel(callId: number, reason: CancelMessage["reason"]): void;
  /** The pool's idle check, where the calls run: true lets the runner shut down. */
  idleCheck(): Promise<boolean>;
  /** The runner is stopping: every running call is aborted with `reason`. */
  close(reason: Error): void;
}

/**
 * Calls run on the thread that holds this host: the runner's main thread,
 * alongside its connection (`runnerThreads: 1`), or one worker thread
 * (threads/thread-main.ts, with its thread number in `scope`).
 */
export class InlineCalls implements CallHost {
  readonly decodesArgs = true;
  readonly threads = 0;
  private readonly running = new Map<number, CallCancellation>();
  private readonly scope: CallScope;

  constructor(scope: Omit<CallScope, "thread"> & { thread?: number }) {
    this.scope = { thread: 0, ...scope };
  }

  poolDefined(): boolean {
    return this.scope.findPool() !== undefined;
  }

  isRunning(callId: number): boolean {
    return this.running.has(callId);
  }

  run(call: DecodedCall): Buffer | Promise<Buffer> {
    const cancellation = new CallCancellation();
    this.running.set(call.callId, cancellation);
    const result = executeCall(call, this.scope, cancellation);
    if (!(result instanceof Promise)) {
      this.running.delete(call.callId);
      return encodeResult(result);
    }
    return result.then((settled) => {
      this.running.delete(call.callId);
      return encodeResult(settled);
    });
  }

  cancel(callId: number, reason: CancelMessage["reason"]): void {
    this.running.get(callId)?.abort(new Error(`call cancelled by the parent (${reason})`));
  }

  async idleCheck(): Promise<boolean> {
    return (await this.scope.findPool()?.runIdleCheck()) ?? true;
  }

  close(reason: Error): void {
    for (const cancellation of this.running.values()) cancellation.abort(reason);
    this.running.clear();
  }
}
