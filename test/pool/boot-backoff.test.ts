/**
 * BootBackoff alone: the waits between failed boots, what it remembers of
 * failures, and its one retry timer. Math.random is pinned to see the bounds
 * of the jitter; fake timers drive `schedule`.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BootBackoff } from "../../src/pool/boot-backoff.js";

/** Delays of `count` failures in a row, each boot having taken `duration` ms. */
function delaysOf(backoff: BootBackoff, count: number, duration = 50): number[] {
  return Array.from({ length: count }, (_, i) => backoff.failed(new Error(`boot ${i} failed`), duration));
}

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe("BootBackoff delays", () => {
  it("double from 100 ms and stop at 5 s, at the top of the jitter", () => {
    vi.spyOn(Math, "random").mockReturnValue(1);
    expect(delaysOf(new BootBackoff(), 10)).toEqual([100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000, 5_000]);
  });

  it("never wait less than half the ceiling, at the bottom of the jitter", () => {
    vi.spyOn(Math, "random").mockReturnValue(0);
    expect(delaysOf(new BootBackoff(), 8)).toEqual([50, 100, 200, 400, 800, 1_600, 2_500, 2_500]);
  });

  it("stay within the jitter's bounds with real randomness", () => {
    const backoff = new BootBackoff();
    const delays = delaysOf(backoff, 12);
    delays.forEach((delay, i) => {
      const ceiling = Math.min(5_000, 100 * 2 ** i);
      expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
      expect(delay).toBeLessThanOrEqual(ceiling);
    });
  });

  it("cap at the boot's duration when a slow boot fails, so it is not retried faster than it fails", () => {
    vi.spyOn(Math, "random").mockReturnValue(1);
    const delays = delaysOf(new BootBackoff(), 12, 20_000);
    expect(delays.slice(0, 8)).toEqual([100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800]);
    expect(delays.slice(8)).toEqual([20_000, 20_000, 20_000, 20_000]);
  });

  it("keep the 5 s cap for boots faster than that", () => {
    vi.spyOn(Math, "random").mockReturnValue(1);
    expect(delaysOf(new BootBackoff(), 9, 1_000).at(-1)).toBe(5_000);
  });

  it("follow the last failure's duration: a slow failure raises the cap, a fast one lowers it again", () => {
    vi.spyOn(Math, "random").mockReturnValue(1);
    const backoff = new BootBackoff();
    delaysOf(backoff, 8);
    expect(backoff.failed(new Error("slow"), 30_000)).toBe(25_600);
    expect(backoff.failed(new Error("slow"), 30_000)).toBe(30_000);
    expect(backoff.failed(new Error("fast"), 10)).toBe(5_000);
  });

  it("start over after a success", () => {
    vi.spyOn(Math, "random").mockReturnValue(1);
    const backoff = new BootBackoff();
    delaysOf(backoff, 6);
    backoff.succeeded(300);
    expect(delaysOf(backoff, 3)).toEqual([100, 200, 400]);
  });
});

describe("BootBackoff's memory of failures", () => {
  it("keeps the last error and the last boot's duration, success or failure", () => {
    const backoff = new BootBackoff();
    expect(backoff.lastError).toBeUndefined();
    expect(backoff.lastDuration).toBe(0);

    const first = new Error("connection refused");
    backoff.failed(first, 1_200);
    expect(backoff.lastError).toBe(first);
    expect(backoff.lastDuration).toBe(1_200);

    backoff.succeeded(800);
    expect(backoff.lastDuration).toBe(800);
    // The last failure still explains a later timeout.
    expect(backoff.lastError).toBe(first);
  });

  it("sets `repeated` only for the same signature twice in a row", () => {
    const backoff = new BootBackoff();
    backoff.failed(new Error("bad entry"), 10);
    expect(backoff.repeated).toBe(false);
    backoff.failed(new Error("bad entry"), 10);
    expect(backoff.repeated).toBe(true);
    backoff.failed(new Error("bad entry"), 10);
    expect(backoff.repeated).toBe(true);
    backoff.failed(new Error("port in use"), 10);
    expect(backoff.repeated).toBe(false);
    backoff.failed(new Error("bad entry"), 10);
    expect(backoff.repeated).toBe(false);
    backoff.failed(new Error("bad entry"), 10);
    expect(backoff.repeated).toBe(true);
  });

  it("compares signatures, not messages, when given one", () => {
    const backoff = new BootBackoff();
    backoff.failed(new Error("runner r-1 (pid 101) exited with 1"), 10, "runner exited with 1");
    backoff.failed(new Error("runner r-2 (pid 102) exited with 1"), 10, "runner exited with 1");
    expect(backoff.repeated).toBe(true);
    backoff.failed(new Error("runner r-3 (pid 103) exited with 1"), 10, "runner exited with 2");
    expect(backoff.repeated).toBe(false);
  });

  it("a success in between means the next failure is not a repeat", () => {
    const backoff = new BootBackoff();
    backoff.failed(new Error("flaky"), 10);
    backoff.failed(new Error("flaky"), 10);
    expect(backoff.repeated).toBe(true);
    backoff.succeeded(10);
    expect(backoff.repeated).toBe(false);
    backoff.failed(new Error("flaky"), 10);
    expect(backoff.repeated).toBe(false);
  });
});

describe("BootBackoff's retry timer", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });

  it("runs the retry after the delay, waiting until then", () => {
    const backoff = new BootBackoff();
    const retry = vi.fn(() => expect(backoff.waiting).toBe(false));
    expect(backoff.waiting).toBe(false);

    backoff.schedule(400, retry);
    expect(backoff.waiting).toBe(true);
    vi.advanceTimersByTime(399);
    expect(retry).not.toHaveBeenCalled();
    expect(backoff.waiting).toBe(true);

    vi.advanceTimersByTime(1);
    expect(retry).toHaveBeenCalledTimes(1);
    expect(backoff.waiting).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("cancel stops a scheduled retry", () => {
    const backoff = new BootBackoff();
    const retry = vi.fn();
    backoff.schedule(400, retry);
    backoff.cancel();
    expect(backoff.waiting).toBe(false);
    vi.advanceTimersByTime(10_000);
    expect(retry).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
    // Cancelling with nothing scheduled is harmless.
    backoff.cancel();
  });

  it("a second schedule replaces the first", () => {
    const backoff = new BootBackoff();
    const first = vi.fn();
    const second = vi.fn();
    backoff.schedule(100, first);
    backoff.schedule(300, second);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(1_000);
    expect(first).not.toHaveBeenCalled();
    expect(second).toHaveBeenCalledTimes(1);
  });

  it("a retry may schedule the next one", () => {
    const backoff = new BootBackoff();
    const at: number[] = [];
    const start = Date.now();
    const retry = () => {
      at.push(Date.now() - start);
      if (at.length < 3) backoff.schedule(100 * at.length, retry);
    };
    backoff.schedule(50, retry);
    vi.advanceTimersByTime(1_000);
    expect(at).toEqual([50, 150, 350]);
    expect(backoff.waiting).toBe(false);
  });

  it("a failure's delay scheduled as is: the retry comes when the delay says", () => {
    vi.spyOn(Math, "random").mockReturnValue(1);
    const backoff = new BootBackoff();
    const retry = vi.fn();
    backoff.schedule(backoff.failed(new Error("down"), 10), retry);
    vi.advanceTimersByTime(99);
    expect(retry).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(retry).toHaveBeenCalledTimes(1);
  });
});
