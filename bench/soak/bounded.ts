/** Waiting with a bound: a soak must end by itself even when what it waits for never happens. */
import { setTimeout as delay } from "node:timers/promises";

/** Resolves true when `promise` settles within `ms`, false when the time ran out first. Never rejects. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  const settled = promise.then(
    () => true,
    () => true,
  );
  const timedOut = delay(ms, false, { signal: timer.signal }).catch(() => false);
  try {
    return await Promise.race([settled, timedOut]);
  } finally {
    timer.abort();
  }
}

/** Polls `condition` every 50 ms until it holds (true) or `ms` ran out (false). */
export async function holdsWithin(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() >= deadline) return false;
    await delay(50);
  }
  return true;
}
