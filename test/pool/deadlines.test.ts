/**
 * Deadlines alone, under fake timers: each deadline fires once, at its time,
 * in order; a cancelled one never fires; one duration shares one timer
 * however many calls wait on it; an owner that throws strands no other.
 */
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Deadlines } from "../../src/pool/deadlines.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("Deadlines", () => {
  it("fires each deadline once, when it is due and not before, oldest first", () => {
    const deadlines = new Deadlines();
    const fired: string[] = [];
    deadlines.add(100, () => fired.push("a"));
    vi.advanceTimersByTime(40);
    deadlines.add(100, () => fired.push("b"));
    deadlines.add(30, () => fired.push("short"));
    vi.advanceTimersByTime(29);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(["short"]);
    vi.advanceTimersByTime(29);
    expect(fired).toEqual(["short"]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(["short", "a"]);
    vi.advanceTimersByTime(40);
    expect(fired).toEqual(["short", "a", "b"]);
    vi.advanceTimersByTime(10_000);
    expect(fired).toEqual(["short", "a", "b"]);
    expect(deadlines.pending).toBe(0);
  });

  it("a thousand deadlines of one duration share one timer", () => {
    const deadlines = new Deadlines();
    let fired = 0;
    for (let i = 0; i < 1_000; i++) deadlines.add(5_000, () => (fired += 1));
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(5_000);
    expect(fired).toBe(1_000);
    // Nothing left: the list is dropped with its timer.
    expect(vi.getTimerCount()).toBe(0);
  });

  it("a cancelled deadline never fires, wherever it is in its list, and cancelling twice does nothing", () => {
    const deadlines = new Deadlines();
    const fired: number[] = [];
    const all = [0, 1, 2, 3, 4].map((n) => deadlines.add(100, () => fired.push(n)));
    deadlines.cancel(all[0]);
    deadlines.cancel(all[2]);
    deadlines.cancel(all[4]);
    deadlines.cancel(all[2]);
    expect(deadlines.pending).toBe(2);
    vi.advanceTimersByTime(100);
    expect(fired).toEqual([1, 3]);
    // Cancelling one that already fired changes nothing either.
    deadlines.cancel(all[1]);
    expect(deadlines.pending).toBe(0);
  });

  it("a list emptied by cancels keeps its timer until it fires, then drops it; new deadlines after that start afresh", () => {
    const deadlines = new Deadlines();
    const first = deadlines.add(1_000, () => undefined);
    deadlines.cancel(first);
    expect(deadlines.pending).toBe(0);
    vi.advanceTimersByTime(1_000);
    expect(vi.getTimerCount()).toBe(0);
    let fired = false;
    deadlines.add(1_000, () => (fired = true));
    vi.advanceTimersByTime(999);
    expect(fired).toBe(false);
    vi.advanceTimersByTime(1);
    expect(fired).toBe(true);
  });

  it("a deadline added while the timer waits for an earlier, cancelled one still fires on time", () => {
    const deadlines = new Deadlines();
    const early = deadlines.add(100, () => undefined);
    vi.advanceTimersByTime(50);
    deadlines.cancel(early);
    let firedAt: number | undefined;
    const start = Date.now();
    deadlines.add(100, () => (firedAt = Date.now() - start));
    vi.advanceTimersByTime(200);
    expect(firedAt).toBe(100);
  });

  it("an owner that throws does not keep the deadlines due with it from firing", () => {
    const deadlines = new Deadlines();
    const fired: number[] = [];
    const thrown: unknown[] = [];
    // The error is rethrown outside the loop, in a microtask; catch it there.
    const original = globalThis.queueMicrotask;
    globalThis.queueMicrotask = (task) =>
      original(() => {
        try {
          task();
        } catch (error) {
          thrown.push(error);
        }
      });
    try {
      deadlines.add(10, () => fired.push(1));
      deadlines.add(10, () => {
        throw new Error("owner failed");
      });
      deadlines.add(10, () => fired.push(3));
      vi.advanceTimersByTime(10);
      expect(fired).toEqual([1, 3]);
    } finally {
      globalThis.queueMicrotask = original;
    }
    return Promise.resolve().then(() => expect(thrown).toMatchObject([{ message: "owner failed" }]));
  });

  it("fires exactly the deadlines not cancelled, each at its own time, for any mix of durations and cancels", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(500), duration: fc.constantFrom(0, 5, 50, 300), cancelAfter: fc.option(fc.nat(400)) }), { maxLength: 60 }),
        (plans) => {
          vi.useFakeTimers();
          const deadlines = new Deadlines();
          const start = Date.now();
          const firedAt = new Map<number, number>();
          const events = plans
            .flatMap((plan, index) => [
              { time: plan.at, run: () => (handles[index] = deadlines.add(plan.duration, () => firedAt.set(index, Date.now() - start))) },
              ...(plan.cancelAfter === null ? [] : [{ time: plan.at + plan.cancelAfter, run: () => deadlines.cancel(handles[index]) }]),
            ])
            .sort((a, b) => a.time - b.time);
          const handles: Array<ReturnType<Deadlines["add"]>> = [];
          for (const event of events) {
            vi.advanceTimersByTime(start + event.time - Date.now());
            event.run();
          }
          vi.advanceTimersByTime(1_000);
          plans.forEach((plan, index) => {
            // As with setTimeout, 0 ms means the next millisecond.
            const due = plan.at + Math.max(1, plan.duration);
            // A cancel at the same time as the deadline runs after it here (the timer ran first).
            const cancelledFirst = plan.cancelAfter !== null && plan.at + plan.cancelAfter < due;
            if (cancelledFirst) expect(firedAt.has(index)).toBe(false);
            else expect(firedAt.get(index)).toBe(due);
          });
          vi.useRealTimers();
        },
      ),
      { numRuns: 200 },
    );
  });
});
