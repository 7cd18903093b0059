/**
 * The token bucket that paces FlyBackend's creates, alone. Time is passed in
 * as `now` where the bucket takes it, and driven with fake timers where
 * callers wait their turn the way the backend's paceCreate does: reserve a
 * token, sleep until it is there, give it back when aborted first.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TokenBucket } from "../../../src/backends/fly/token-bucket.js";

const T0 = 1_000_000;

/** Waits for a turn as paceCreate does; resolves at the turn, rejects with the signal's reason. */
function takeTurn(bucket: TokenBucket, signal?: AbortSignal): Promise<void> {
  const wait = bucket.reserve();
  if (wait === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, wait);
    const onAbort = () => {
      clearTimeout(timer);
      bucket.giveBack();
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Starts `count` callers at once; `served` lists [caller, ms after start] in the order they got their turn. */
function startCallers(bucket: TokenBucket, count: number, signals: (AbortSignal | undefined)[] = []) {
  const served: [number, number][] = [];
  const outcomes = Array.from({ length: count }, (_, caller) =>
    takeTurn(bucket, signals[caller]).then(
      () => void served.push([caller, Date.now() - T0]),
      (error: unknown) => error,
    ),
  );
  return { served, outcomes };
}

describe("TokenBucket, with time passed in", () => {
  it("starts full: a burst is taken at once, the next waits a token's time", () => {
    const bucket = new TokenBucket(1, 3, T0);
    expect([bucket.tryTake(T0), bucket.tryTake(T0), bucket.tryTake(T0)]).toEqual([0, 0, 0]);
    expect(bucket.tryTake(T0)).toBe(1_000);
    // A refused take costs nothing.
    expect(bucket.tryTake(T0)).toBe(1_000);
  });

  it("refills continuously at its rate", () => {
    const bucket = new TokenBucket(1, 3, T0);
    for (let i = 0; i < 3; i += 1) bucket.tryTake(T0);
    expect(bucket.tryTake(T0 + 250)).toBe(750);
    expect(bucket.tryTake(T0 + 750)).toBe(250);
    expect(bucket.tryTake(T0 + 1_000)).toBe(0);
    expect(bucket.tryTake(T0 + 1_000)).toBe(1_000);
  });

  it("refills faster at a higher rate (get machine: 5 per second, bursts of 10)", () => {
    const bucket = new TokenBucket(5, 10, T0);
    for (let i = 0; i < 10; i += 1) expect(bucket.tryTake(T0)).toBe(0);
    expect(bucket.tryTake(T0)).toBe(200);
    expect(bucket.tryTake(T0 + 100)).toBe(100);
    expect(bucket.tryTake(T0 + 200)).toBe(0);
  });

  it("holds no more than its burst however long it sat idle", () => {
    const bucket = new TokenBucket(1, 3, T0);
    bucket.tryTake(T0);
    const later = T0 + 3_600_000;
    expect([bucket.tryTake(later), bucket.tryTake(later), bucket.tryTake(later)]).toEqual([0, 0, 0]);
    expect(bucket.tryTake(later)).toBe(1_000);
  });

  it("paces a steady caller to exactly its rate after the burst", () => {
    const bucket = new TokenBucket(1, 3, T0);
    const taken: number[] = [];
    // Steps of a quarter second, exact in binary floating point.
    for (let now = T0; now < T0 + 5_000; now += 250) if (bucket.tryTake(now) === 0) taken.push(now - T0);
    expect(taken).toEqual([0, 250, 500, 1_000, 2_000, 3_000, 4_000]);
  });

  it("allows a tolerance of a token for clock jitter, and charges it to the next take", () => {
    const bucket = new TokenBucket(1, 3, T0);
    for (let i = 0; i < 3; i += 1) bucket.tryTake(T0);
    // Waits are rounded up to whole ms, and 0.94 tokens is not exact in floating point.
    expect(bucket.tryTake(T0 + 940, 0.05)).toBeGreaterThanOrEqual(60);
    expect(bucket.tryTake(T0 + 940, 0.05)).toBeLessThanOrEqual(61);
    expect(bucket.tryTake(T0 + 950, 0.05)).toBe(0);
    // The token was taken 50 ms early: the next one is 50 ms later.
    expect(bucket.tryTake(T0 + 950)).toBeGreaterThanOrEqual(1_050);
    expect(bucket.tryTake(T0 + 950)).toBeLessThanOrEqual(1_051);
  });

  it("ignores a clock that goes back", () => {
    const bucket = new TokenBucket(1, 1, T0);
    expect(bucket.tryTake(T0)).toBe(0);
    expect(bucket.tryTake(T0 - 5_000)).toBe(1_000);
    expect(bucket.tryTake(T0 + 1_000)).toBe(0);
  });

  it("delayOfNext tells the wait without taking a token", () => {
    const bucket = new TokenBucket(1, 1, T0);
    expect(bucket.delayOfNext(T0)).toBe(0);
    expect(bucket.delayOfNext(T0)).toBe(0);
    expect(bucket.tryTake(T0)).toBe(0);
    expect(bucket.delayOfNext(T0 + 400)).toBe(600);
    expect(bucket.delayOfNext(T0 + 400)).toBe(600);
  });

  it("reserve hands out turns one token's time apart, beyond what the bucket holds", () => {
    const bucket = new TokenBucket(1, 3, T0);
    const waits = Array.from({ length: 6 }, () => bucket.reserve(T0));
    expect(waits).toEqual([0, 0, 0, 1_000, 2_000, 3_000]);
    expect(bucket.delayOfNext(T0)).toBe(4_000);
    // Time pays the reservations off.
    expect(bucket.delayOfNext(T0 + 3_500)).toBe(500);
  });

  it("giveBack frees a reserved turn for the next caller", () => {
    const bucket = new TokenBucket(1, 3, T0);
    for (let i = 0; i < 5; i += 1) bucket.reserve(T0);
    expect(bucket.delayOfNext(T0)).toBe(3_000);
    bucket.giveBack();
    expect(bucket.delayOfNext(T0)).toBe(2_000);
  });

  it("giveBack never fills the bucket past its burst", () => {
    const bucket = new TokenBucket(1, 3, T0);
    bucket.giveBack();
    bucket.giveBack();
    const taken = Array.from({ length: 5 }, () => bucket.tryTake(T0));
    expect(taken).toEqual([0, 0, 0, 1_000, 1_000]);
  });
});

describe("TokenBucket, callers waiting their turn", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: T0 });
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it("serves waiting callers in the order they came, one per second after the burst", async () => {
    const bucket = new TokenBucket(1, 3);
    const { served, outcomes } = startCallers(bucket, 6);
    await vi.advanceTimersByTimeAsync(0);
    expect(served).toEqual([[0, 0], [1, 0], [2, 0]]);

    await vi.advanceTimersByTimeAsync(999);
    expect(served).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(served.at(-1)).toEqual([3, 1_000]);

    await vi.advanceTimersByTimeAsync(2_000);
    await Promise.all(outcomes);
    expect(served).toEqual([[0, 0], [1, 0], [2, 0], [3, 1_000], [4, 2_000], [5, 3_000]]);
  });

  it("a caller that comes later waits behind those already waiting", async () => {
    const bucket = new TokenBucket(1, 3);
    const early = startCallers(bucket, 5);
    await vi.advanceTimersByTimeAsync(500);
    const late = startCallers(bucket, 1);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(early.served.map(([, at]) => at)).toEqual([0, 0, 0, 1_000, 2_000]);
    expect(late.served).toEqual([[0, 3_000]]);
  });

  it("a caller aborted while waiting rejects with the signal's reason and frees its turn", async () => {
    const bucket = new TokenBucket(1, 3);
    const controller = new AbortController();
    // Caller 4 would go at 2 000 ms, caller 5 at 3 000 ms.
    const { served, outcomes } = startCallers(bucket, 6, [undefined, undefined, undefined, undefined, controller.signal]);
    await vi.advanceTimersByTimeAsync(500);
    const reason = new Error("boot abandoned");
    controller.abort(reason);
    expect(await outcomes[4]).toBe(reason);

    // A newcomer goes with caller 5 (the bucket holds 2 tokens by then), not a second after it.
    const late = startCallers(bucket, 1);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(served).toEqual([[0, 0], [1, 0], [2, 0], [3, 1_000], [5, 3_000]]);
    expect(late.served).toEqual([[0, 3_000]]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("freed turns never let the pace exceed the rate: no second holds more turns than the burst", async () => {
    const bucket = new TokenBucket(1, 3);
    const controllers = Array.from({ length: 10 }, () => new AbortController());
    const { served } = startCallers(bucket, 10, controllers.map((controller) => controller.signal));
    await vi.advanceTimersByTimeAsync(1_500);
    // Abort every other waiting caller, then a crowd of newcomers arrives.
    for (const index of [4, 6, 8]) controllers[index]!.abort(new Error("gone"));
    const late = startCallers(bucket, 6);
    await vi.advanceTimersByTimeAsync(20_000);

    const turns = [...served, ...late.served].map(([, at]) => at).sort((a, b) => a - b);
    expect(turns).toHaveLength(13);
    for (const start of turns) {
      const inWindow = turns.filter((at) => at >= start && at < start + 1_000).length;
      // A full bucket spends 3 at once; the next token takes a whole second.
      expect(inWindow).toBeLessThanOrEqual(3);
    }
    // After the burst, one per second: 13 turns take 10 s.
    expect(turns.at(-1)).toBe(10_000);
  });
});
