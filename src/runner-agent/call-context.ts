/**
 * The context of one call on the runner, as `currentCall()` reports it. Its
 * AbortSignal is made only when the function reads it: most calls never do,
 * and an AbortController per call was 6-9% of a busy runner's CPU. A cancel
 * that arrives first is remembered, so a signal made later is already aborted.
 *
 * The context is an instance of a class with the signal as a prototype
 * getter: an object literal spreading the fields next to a getter was 4% of a
 * busy runner's CPU on its own (V8 builds such literals slowly).
 */
import type { CallContext } from "../call-context.js";

type ContextFields = Omit<CallContext, "signal">;

class RunnerCallContext implements CallContext {
  readonly runnerId: string;
  readonly pool: string;
  readonly functionId: string;
  readonly deadline: number;
  readonly thread: number;
  // A true private field: spreading or logging a context shows its fields only.
  readonly #cancellation: CallCancellation;

  constructor(cancellation: CallCancellation, fields: ContextFields) {
    this.#cancellation = cancellation;
    this.runnerId = fields.runnerId;
    this.pool = fields.pool;
    this.functionId = fields.functionId;
    this.deadline = fields.deadline;
    this.thread = fields.thread;
  }

  get signal(): AbortSignal {
    return this.#cancellation.signal();
  }

  /** What `currentCall()` shows when logged: the fields, not the cancellation behind them. */
  toJSON(): ContextFields {
    return { runnerId: this.runnerId, pool: this.pool, functionId: this.functionId, deadline: this.deadline, thread: this.thread };
  }
}

export class CallCancellation {
  private controller: AbortController | undefined;
  private reason: unknown;
  private cancelled = false;

  context(fields: ContextFields): CallContext {
    return new RunnerCallContext(this, fields);
  }

  /** The call's signal, made on first use. */
  signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.cancelled) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}
