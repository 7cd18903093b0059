/**
 * The context of one call on the runner, as `currentCall()` reports it. Its
 * AbortSignal is made only when the function reads it: most calls never do,
 * and an AbortController per call was 6-9% of a busy runner's CPU. A cancel
 * that arrives first is remembered, so a signal made later is already aborted.
 */
import type { CallContext } from "../call-context.js";

export class CallCancellation {
  private controller: AbortController | undefined;
  private reason: unknown;
  private cancelled = false;

  context(fields: Omit<CallContext, "signal">): CallContext {
    const self = this;
    return {
      get signal(): AbortSignal {
        if (!self.controller) {
          self.controller = new AbortController();
          if (self.cancelled) self.controller.abort(self.reason);
        }
        return self.controller.signal;
      },
      ...fields,
    };
  }

  abort(reason: unknown): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}
