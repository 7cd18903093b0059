/**
 * The one retry loop (src/retry.ts), alone, on fake timers: what it waits,
 * when it gives up, and what it throws.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { backoffDelay, retry, sleep, type RetryOptions } from "../src/retry.js";

const T0 = 1_000_000;

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
});

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

/** An attempt that fails `failures` times (recording when each attempt started), then resolves "done". */
function flaky(failures: number, error: (attempt: number) => unknown = (attempt) => new Error(`failure ${attempt}`)) {
  const startedAt: number[] = [];
  const attempt = vi.fn(async (number: number) => {
    startedAt.push(Date.now() - T0);
    if (number <= failures) throw error(number);
    return "done";
  });
  return { attempt, startedAt };
}

/** Settles `promise` while running the fake clock; returns its outcome so a rejection is never unhandled. */
async function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  const outcome = promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  await vi.runAllTimersAsync();
  return outcome;
}

describe("backoffDelay", () => {
  it("waits between half the ceiling and the ceiling, which doubles up to the cap", () => {
    const random = vi.spyOn(Math, "random");
    random.mockReturnValue(0);
    expect([1, 2, 3, 4, 10].map((attempt) => backoffDelay(attempt, 100, 1_000))).toEqual([50, 100, 200, 400, 500]);
    random.mockReturnValue(0.999_999);
    expect([1, 2, 3, 4, 10].map((attempt) => backoffDelay(attempt, 100, 1_000))).toEqual([100, 200, 400, 800, 1_000]);
  });

  it("stays within those bounds whatever the draw", () => {
    for (let draw = 0; draw < 200; draw += 1) {
      for (const attempt of [1, 2, 5, 9]) {
        const ceiling = Math.min(5_000, 200 * 2 ** (attempt - 1));
        const delay = backoffDelay(attempt);
        expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
        expect(delay).toBeLessThanOrEqual(ceiling);
      }
    }
  });
});

describe("retry", () => {
  const options = (overrides: Partial<RetryOptions> = {}): RetryOptions => ({ deadline: T0 + 60_000, ...overrides });

  it("retries with jittered exponential backoff until an attempt succeeds", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0.999_999);
    const { attempt, startedAt } = flaky(3);
    const onRetry = vi.fn();
    const outcome = await settle(retry(attempt, options({ baseDelay: 100, maxDelay: 250, onRetry })));
    expect(outcome.value).toBe("done");
    expect(attempt.mock.calls.map(([number]) => number)).toEqual([1, 2, 3, 4]);
    // Waits of 100, 200, then 250 (the cap).
    expect(startedAt).toEqual([0, 100, 300, 550]);
    expect(onRetry.mock.calls.map(([error, number, delay]) => [(error as Error).message, number, delay])).toEqual([
      ["failure 1", 1, 100],
      ["failure 2", 2, 200],
      ["failure 3", 3, 250],
    ]);
  });

  it("throws an error the classifier refuses at once, without waiting", async () => {
    const fatal = new Error("fatal");
    const { attempt } = flaky(5, (number) => (number === 2 ? fatal : new Error("transient")));
    const shouldRetry = vi.fn((error: unknown, _attempt: number) => error !== fatal);
    const outcome = await settle(retry(attempt, options({ shouldRetry })));
    expect(outcome.error).toBe(fatal);
    expect(attempt).toHaveBeenCalledTimes(2);
    expect(shouldRetry.mock.calls.map(([, number]) => number)).toEqual([1, 2]);
  });

  it("never starts a wait that would end past the deadline, and throws the last error", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0.999_999);
    const { attempt, startedAt } = flaky(100);
    // Waits of 100, 200, 400 fit before 1 000 (attempts at 0, 100, 300, 700); the next, 800, would end at 1 500.
    const outcome = await settle(retry(attempt, options({ deadline: T0 + 1_000, baseDelay: 100, maxDelay: 10_000 })));
    expect((outcome.error as Error).message).toBe("failure 4");
    expect(startedAt).toEqual([0, 100, 300, 700]);
    expect(Date.now()).toBe(T0 + 700);
  });

  it("refuses a wait ending exactly at the deadline: the next attempt must start before it", async () => {
    const { attempt } = flaky(100);
    const outcome = await settle(retry(attempt, options({ deadline: T0 + 500, shouldRetry: () => ({ after: 500 }) })));
    expect((outcome.error as Error).message).toBe("failure 1");
    expect(attempt).toHaveBeenCalledTimes(1);
  });

  it("runs the first attempt even past the deadline", async () => {
    const { attempt } = flaky(0);
    expect((await settle(retry(attempt, options({ deadline: T0 - 1 })))).value).toBe("done");
  });

  it("throws what errorAtDeadline makes of the last error, given the number of attempts", async () => {
    const { attempt } = flaky(100);
    const errorAtDeadline = vi.fn((error: unknown, attempts: number) => new Error(`${(error as Error).message}, gave up after ${attempts}`));
    const outcome = await settle(retry(attempt, options({ deadline: T0 + 250, shouldRetry: () => ({ after: 100 }), errorAtDeadline })));
    expect((outcome.error as Error).message).toBe("failure 3, gave up after 3");
    // A refused error is thrown as it is.
    const fatal = new Error("fatal");
    const refused = await settle(retry(() => Promise.reject(fatal), options({ shouldRetry: () => false, errorAtDeadline })));
    expect(refused.error).toBe(fatal);
    expect(errorAtDeadline).toHaveBeenCalledTimes(1);
  });

  it("waits what the classifier names (a server's Retry-After) instead of the backoff, beyond maxDelay too", async () => {
    const { attempt, startedAt } = flaky(2);
    const outcome = await settle(retry(attempt, options({ maxDelay: 1_000, shouldRetry: (_error, number) => ({ after: number === 1 ? 3_000 : 0 }) })));
    expect(outcome.value).toBe("done");
    expect(startedAt).toEqual([0, 3_000, 3_000]);
  });

  it("honours a Retry-After only while it fits before the deadline", async () => {
    const { attempt } = flaky(100);
    const outcome = await settle(retry(attempt, options({ deadline: T0 + 2_000, shouldRetry: () => ({ after: 5_000 }) })));
    expect((outcome.error as Error).message).toBe("failure 1");
    expect(attempt).toHaveBeenCalledTimes(1);
    expect(Date.now()).toBe(T0);
  });

  it("rejects with the signal's reason when aborted during a wait, and starts no other attempt", async () => {
    const { attempt } = flaky(100);
    const stop = new AbortController();
    const reason = new Error("pool stopped");
    const retrying = retry(attempt, options({ signal: stop.signal, shouldRetry: () => ({ after: 10_000 }) })).catch((error: unknown) => error);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(attempt).toHaveBeenCalledTimes(1);
    stop.abort(reason);
    expect(await retrying).toBe(reason);
    await vi.runAllTimersAsync();
    expect(attempt).toHaveBeenCalledTimes(1);
  });

  it("starts nothing when the signal has already aborted", async () => {
    const { attempt } = flaky(0);
    const reason = new Error("already gone");
    const outcome = await settle(retry(attempt, options({ signal: AbortSignal.abort(reason) })));
    expect(outcome.error).toBe(reason);
    expect(attempt).not.toHaveBeenCalled();
  });

  it("after an abort during an attempt, throws the reason instead of retrying, but hands back a success", async () => {
    const stop = new AbortController();
    const reason = new Error("boot abandoned");
    const failing = retry(async () => {
      stop.abort(reason);
      throw new Error("transient");
    }, options({ signal: stop.signal }));
    expect((await settle(failing)).error).toBe(reason);

    const late = new AbortController();
    const succeeding = retry(async () => {
      late.abort(reason);
      return "made a machine";
    }, options({ signal: late.signal }));
    expect((await settle(succeeding)).value).toBe("made a machine");
  });

  it("an abort does not override an error the classifier refuses", async () => {
    const stop = new AbortController();
    const fatal = new Error("fatal");
    const outcome = await settle(
      retry(async () => {
        stop.abort(new Error("later"));
        throw fatal;
      }, options({ signal: stop.signal, shouldRetry: () => false })),
    );
    expect(outcome.error).toBe(fatal);
  });
});

describe("sleep", () => {
  it("resolves after the delay, or rejects with the signal's reason", async () => {
    let slept = false;
    void sleep(100).then(() => (slept = true));
    await vi.advanceTimersByTimeAsync(99);
    expect(slept).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(slept).toBe(true);

    const stop = new AbortController();
    const waiting = sleep(1_000, stop.signal).catch((error: unknown) => error);
    stop.abort("stopped");
    expect(await waiting).toBe("stopped");
    expect(vi.getTimerCount()).toBe(0);
  });
});
