/**
 * KubernetesApiError on its own: users catch it with `instanceof`, so
 * flame-ts exports it at import, while the client that throws it (api.ts) is
 * loaded only when a KubernetesBackend is first used. Both import this one class.
 */
import { BackendError, ERROR_CODES, type FlameErrorCode } from "../../errors.js";

/** An API request failed with a status, or without any response. */
export class KubernetesApiError extends BackendError {
  /** HTTP status, or undefined when no response arrived. */
  readonly status: number | undefined;
  /** The Status object's `reason`, e.g. "AlreadyExists", "Forbidden". */
  readonly reason: string | undefined;
  /** Ms the server asked to wait (Retry-After), if it said. */
  readonly retryAfter: number | undefined;

  constructor(message: string, options: { retryable: boolean; code?: FlameErrorCode; cause?: unknown; status?: number; reason?: string; retryAfter?: number }) {
    super(message, { retryable: options.retryable, code: options.code ?? ERROR_CODES.FLAME_KUBERNETES_FAILED, cause: options.cause });
    this.status = options.status;
    this.reason = options.reason;
    this.retryAfter = options.retryAfter;
  }
}
