/**
 * Waiting between attempts, shared by the pool's boot retries and the
 * backends' API retries.
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
