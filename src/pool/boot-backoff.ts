/**
 * Backoff between failed boots (retry.ts' backoffDelay, the cap raised for
 * slow boots). Remembers the last failure (to explain timeouts) and how long
 * boots take (to judge whether a retry can still serve a waiting caller in time).
 */
import { backoffDelay } from "../retry.js";

const BASE_DELAY = 100;
const MAX_DELAY = 5_000;

export class BootBackoff {
  lastError: Error | undefined;
  /** Whether the last failure was the same as the one before it (see `failed`). */
  repeated = false;
  private lastSignature: string | undefined;
  /** How long the last boot took (ms), success or failure: the estimate of what a retry takes. */
  lastDuration = 0;
  private consecutiveFailures = 0;
  private timer: NodeJS.Timeout | undefined;

  get waiting(): boolean {
    return this.timer !== undefined;
  }

  succeeded(duration: number): void {
    this.lastDuration = duration;
    this.consecutiveFailures = 0;
    this.lastSignature = undefined;
    this.repeated = false;
  }

  /**
   * Records a failure and returns how long to wait before the next boot, in ms.
   * `signature` is the failure with what differs between attempts (runner ids,
   * pids, ports) taken out: two in a row that match set `repeated`.
   */
  failed(error: Error, duration: number, signature = error.message): number {
    this.repeated = this.consecutiveFailures > 0 && signature === this.lastSignature;
    this.lastSignature = signature;
    this.lastError = error;
    this.lastDuration = duration;
    this.consecutiveFailures += 1;
    // Slow boots that fail (a machine billed per minute) are not retried faster than they fail.
    return backoffDelay(this.consecutiveFailures, BASE_DELAY, Math.max(MAX_DELAY, duration));
  }

  /** Runs `retry` after `delay`; while waiting, `waiting` is true. */
  schedule(delay: number, retry: () => void): void {
    this.cancel();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      retry();
    }, delay);
    this.timer.unref();
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
