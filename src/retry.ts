/**
 * Waiting between attempts: the one retry loop of the backends' API calls and
 * the runner agent's dial, and the backoff the pool's boot retries use too.
 *
 * The runner agent imports this module, and a runner's cold start is a
 * headline figure: it imports nothing.
 */

/**
 * Exponential backoff with "equal jitter": attempt 1 waits between base/2 and
 * base, doubling up to between cap/2 and cap. The jitter keeps many callers
 * failing together from retrying in lockstep; the floor keeps the wait real.
 */
export function backoffDelay(attempt: number, base = 200, cap = 5_000): number {
  const ceiling = Math.min(cap, base * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * What a failed attempt calls for: `false` throws its error at once, `true`
 * waits the backoff, `{ after }` waits that many ms instead (what a server
 * asked for with Retry-After; 0 tries again at once).
 */
/**
 * What `promise` gives if it settles within `ms`, else undefined (a rejection
 * counts as nothing to say). For waiting "a moment" for an explanation that
 * may never come, without leaving a timer behind.
 */
export async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise.catch(() => undefined), new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export type RetryVerdict = boolean | { after: number };

export interface RetryOptions {
  /**
   * Absolute time (ms since epoch) by which the next attempt must have
   * started: a wait that would end at or after it is not begun, and the last
   * error is thrown instead. The first attempt always runs.
   */
  deadline: number;
  /** Stops the retries: checked before each attempt and interrupts a wait, rejecting with the signal's reason. An attempt in flight is the attempt's own business. */
  signal?: AbortSignal;
  /** Whether `error`, thrown by attempt number `attempt`, is worth another attempt. Default: every error is. */
  shouldRetry?: (error: unknown, attempt: number) => RetryVerdict;
  /** Ceiling of the first backoff, in ms (the wait is between half of it and all of it). Default 200. */
  baseDelay?: number;
  /** Highest ceiling the doubling backoff reaches, in ms. Does not bound a `{ after }` verdict. Default 5 000. */
  maxDelay?: number;
  /** Called before each wait, e.g. to log what failed and when the next attempt comes. */
  onRetry?: (error: unknown, attempt: number, delay: number) => void;
  /** The error to throw when the deadline ends the retries, given the last one and the number of attempts made. Default: the last error itself. */
  errorAtDeadline?: (error: unknown, attempts: number) => unknown;
}

/**
 * Runs `attempt` (given its number, from 1) until it resolves, retrying what
 * `shouldRetry` allows with jittered exponential backoff (see backoffDelay)
 * or the delay the verdict names, for as long as the next attempt can start
 * before `deadline`. Resolves with the first success, whether or not the
 * signal aborted during it: an attempt that created something must be able
 * to hand it back so the caller can clean it up.
 */
export async function retry<T>(attempt: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { deadline, signal, shouldRetry = () => true, baseDelay = 200, maxDelay = 5_000 } = options;
  for (let number = 1; ; number += 1) {
    if (signal?.aborted) throw signal.reason;
    try {
      return await attempt(number);
    } catch (error) {
      const verdict = shouldRetry(error, number);
      if (verdict === false) throw error;
      if (signal?.aborted) throw signal.reason;
      const delay = verdict === true ? backoffDelay(number, baseDelay, maxDelay) : Math.max(0, verdict.after);
      if (Date.now() + delay >= deadline) throw options.errorAtDeadline ? options.errorAtDeadline(error, number) : error;
      options.onRetry?.(error, number, delay);
      await sleep(delay, signal);
    }
  }
}

/** An HTTP Retry-After header (seconds, or an HTTP date) as milliseconds from now; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Math.round(Number(value) * 1_000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
