/**
 * The Fly emulator's own rate limiter (src/emulators/fly/rate-limit.ts),
 * alone, under fake timers. It is the oracle FlyBackend's pacing is tested
 * against, so besides Fly's published numbers it is checked against the
 * backend's token bucket on random request sequences: two implementations
 * of one limit, written differently, must agree.
 */
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TokenBucket } from "../../src/backends/fly/token-bucket.js";
import { DEFAULT_RATE_LIMIT, FlyRateLimits, LOG_HORIZON, RATE_SLACK, RequestLog, retryAfterSeconds } from "../../src/emulators/fly/rate-limit.js";

const T0 = 1_700_000_000_000;
const CREATE = "Machines_create";
const GET = "Machines_show";
const APP = "flame-emulated";

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
});

afterEach(() => {
  vi.useRealTimers();
});

/** Advances the fake clock to `ms` after T0. */
function at(ms: number): void {
  vi.setSystemTime(T0 + ms);
}

/** Admits `count` requests at the current time; returns their answers. */
function burst(log: RequestLog, count: number): number[] {
  return Array.from({ length: count }, () => log.admit());
}

describe("RequestLog: 1 per second with bursts of 3", () => {
  const limit = { perSecond: 1, burst: 3 };

  it("lets a burst of 3 through at once and refuses the 4th for a second, less the slack", () => {
    const log = new RequestLog(limit);
    expect(burst(log, 4)).toEqual([0, 0, 0, 950]);
    expect(retryAfterSeconds(950)).toBe("1");
  });

  it("then one per second, on the second", () => {
    const log = new RequestLog(limit);
    burst(log, 3);
    at(949);
    expect(log.admit()).toBe(1);
    at(950);
    expect(log.admit()).toBe(0);
    expect(log.admit()).toBe(1_000);
    at(1_950);
    expect(log.admit()).toBe(0);
  });

  it("accepts a client pacing exactly to the limit, as FlyBackend does", () => {
    const log = new RequestLog(limit);
    expect(burst(log, 3)).toEqual([0, 0, 0]);
    for (let second = 1; second <= 20; second += 1) {
      at(second * 1_000);
      expect(log.admit(), `request at ${second} s`).toBe(0);
      expect(log.admit(), `second request at ${second} s`).toBeGreaterThan(0);
    }
  });

  it("forgives a paced client's jitter up to the slack, and no more", () => {
    const early = new RequestLog(limit);
    burst(early, 3);
    at(1_000 - 40);
    expect(early.admit()).toBe(0);

    const tooEarly = new RequestLog(limit);
    at(0);
    burst(tooEarly, 3);
    at(1_000 - 100);
    expect(tooEarly.admit()).toBe(50);
  });

  it("catches a client a little faster than 1 per second once it has spent its burst and the slack", () => {
    const log = new RequestLog(limit);
    burst(log, 3);
    const answers: number[] = [];
    // Every 980 ms: no single gap is too short, the spans since the burst are.
    for (let k = 1; k <= 3; k += 1) {
      at(k * 980);
      answers.push(log.admit());
    }
    expect(answers.slice(0, 2)).toEqual([0, 0]);
    expect(answers[2]).toBeGreaterThan(0);
  });

  it("does not count refused requests: hammering does not push the next turn back", () => {
    const log = new RequestLog(limit);
    burst(log, 3);
    for (let ms = 0; ms < 950; ms += 10) {
      at(ms);
      expect(log.admit()).toBe(950 - ms);
    }
    at(950);
    expect(log.admit()).toBe(0);
  });

  it("answers the exact wait: refused a millisecond before it, let through at it", () => {
    const log = new RequestLog(limit);
    at(0);
    log.admit();
    at(300);
    log.admit();
    at(600);
    log.admit();
    at(700);
    const wait = log.admit();
    // The first request's window: 4 requests need 3 + 1 s of span, less the slack.
    expect(wait).toBe(950 - 700);
    at(700 + wait - 1);
    expect(log.admit()).toBeGreaterThan(0);
    at(700 + wait);
    expect(log.admit()).toBe(0);
  });

  it("gives the whole burst back after a quiet spell, and never more than the burst", () => {
    const log = new RequestLog(limit);
    burst(log, 3);
    at(3_000);
    expect(burst(log, 4)).toEqual([0, 0, 0, 950]);
    at(3_600_000);
    expect(burst(log, 4)).toEqual([0, 0, 0, 950]);
  });

  it("remembers only the horizon's worth of requests", () => {
    const log = new RequestLog(limit);
    for (let second = 0; second < 3 * LOG_HORIZON / 1_000; second += 1) {
      at(second * 1_000);
      log.admit();
    }
    expect(log.size).toBeLessThanOrEqual(LOG_HORIZON / 1_000 + limit.burst);
  });

  it("treats a clock that steps back as standing still", () => {
    const log = new RequestLog(limit);
    at(10_000);
    burst(log, 3);
    at(5_000);
    expect(log.admit()).toBe(950);
    at(10_950);
    expect(log.admit()).toBe(0);
  });

  it("refuses limits it cannot enforce", () => {
    expect(() => new RequestLog({ perSecond: 0, burst: 3 })).toThrow(RangeError);
    expect(() => new RequestLog({ perSecond: 1, burst: 0 })).toThrow(RangeError);
    expect(() => new RequestLog({ perSecond: 1, burst: 3 }, RATE_SLACK, 2_000)).toThrow(RangeError);
  });
});

describe("FlyRateLimits: Fly's limits per action and per app or machine", () => {
  it("limits creates per app to 1 per second with bursts of 3", () => {
    const limits = new FlyRateLimits();
    const answers = Array.from({ length: 4 }, () => limits.admit(CREATE, APP));
    expect(answers).toEqual([0, 0, 0, 950]);
  });

  it("allows get machine 5 per second with bursts of 10", () => {
    const limits = new FlyRateLimits();
    const answers = Array.from({ length: 11 }, () => limits.admit(GET, "machine-1"));
    expect(answers.slice(0, 10)).toEqual(Array(10).fill(0));
    expect(answers[10]).toBe(190);
    at(190);
    expect(limits.admit(GET, "machine-1")).toBe(0);
    expect(limits.admit(GET, "machine-1")).toBe(200);
  });

  it("counts each action and each machine on its own", () => {
    const limits = new FlyRateLimits();
    for (let i = 0; i < 3; i += 1) limits.admit(CREATE, APP);
    expect(limits.admit(CREATE, APP)).toBeGreaterThan(0);
    // Lists, and other apps' creates, are not held back by this app's creates.
    expect(limits.admit("Machines_list", APP)).toBe(0);
    expect(limits.admit(CREATE, "other-app")).toBe(0);

    for (let i = 0; i < 3; i += 1) expect(limits.admit("Machines_delete", "machine-1")).toBe(0);
    expect(limits.admit("Machines_delete", "machine-1")).toBeGreaterThan(0);
    expect(limits.admit("Machines_delete", "machine-2")).toBe(0);
  });

  it("gives operations without a published limit of their own the default one", () => {
    expect(DEFAULT_RATE_LIMIT).toEqual({ perSecond: 1, burst: 3 });
    const limits = new FlyRateLimits();
    const answers = Array.from({ length: 4 }, () => limits.admit("Machines_stop", "machine-1"));
    expect(answers).toEqual([0, 0, 0, 950]);
  });

  it("says Retry-After in whole seconds, rounded up, at least 1", () => {
    expect(retryAfterSeconds(1)).toBe("1");
    expect(retryAfterSeconds(1_000)).toBe("1");
    expect(retryAfterSeconds(1_001)).toBe("2");
    expect(retryAfterSeconds(0)).toBe("1");
  });
});

describe("the emulator's limiter and the backend's token bucket agree", () => {
  /**
   * Gaps between requests in ms, fractional so no request lands exactly on a
   * limit's edge, and spanning less than the log's horizon.
   */
  const gaps = fc.array(fc.double({ min: 0, max: 1_400, noNaN: true }), { minLength: 1, maxLength: 40 });

  for (const limit of [{ perSecond: 1, burst: 3 }, { perSecond: 5, burst: 10 }]) {
    it(`on random request times, at ${limit.perSecond} per second with bursts of ${limit.burst}`, () => {
      fc.assert(
        fc.property(gaps, (steps) => {
          const log = new RequestLog(limit);
          const bucket = new TokenBucket(limit.perSecond, limit.burst, T0);
          let now = T0;
          for (const step of steps) {
            // Scaled to the rate, so both limits see bursts, paced stretches and refusals.
            now += step / limit.perSecond;
            const logWait = log.admit(now);
            const bucketWait = bucket.tryTake(now, RATE_SLACK);
            expect(logWait === 0, `request at +${now - T0} ms`).toBe(bucketWait === 0);
            // The bucket's wait is until a whole token, the log's until the slack's edge of it.
            if (logWait > 0) {
              expect(logWait).toBeLessThanOrEqual(bucketWait);
              expect(logWait).toBeGreaterThanOrEqual(bucketWait - Math.ceil((RATE_SLACK / limit.perSecond) * 1_000) - 1);
            }
          }
        }),
        { seed: 20_261_202, numRuns: 150 },
      );
    });
  }
});
