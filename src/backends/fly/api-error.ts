/**
 * FlyApiError on its own: users catch it with `instanceof`, so flame-ts
 * exports it at import, while the client that throws it (api.ts) is loaded
 * only when a FlyBackend is first used. Both import this one class.
 */
import { BackendError, ERROR_CODES, type FlameErrorCode } from "../../errors.js";

/** A Machines API call failed with a status, or without any response. */
export class FlyApiError extends BackendError {
  /** HTTP status, or undefined when no response arrived. */
  readonly status: number | undefined;
  readonly requestId: string | undefined;
  /** Fly's machine-readable `status` field, e.g. "insufficient_capacity". */
  readonly flyStatus: string | undefined;
  /** Milliseconds Fly asked to wait before trying again (Retry-After), if it said. */
  readonly retryAfter: number | undefined;

  constructor(
    message: string,
    options: { retryable: boolean; code?: FlameErrorCode; cause?: unknown; status?: number; requestId?: string; flyStatus?: string; retryAfter?: number },
  ) {
    super(message, { retryable: options.retryable, code: options.code ?? ERROR_CODES.FLAME_FLY_FAILED, cause: options.cause });
    this.status = options.status;
    this.requestId = options.requestId;
    this.flyStatus = options.flyStatus;
    this.retryAfter = options.retryAfter;
  }
}
