/**
 * The emulator's own enforcement of Fly's published Machines API rate limits
 * (1 request per second per action, bursts of 3; get machine 5 per second,
 * bursts of 10). It is the test oracle for FlyBackend's client-side pacing,
 * so it shares no code with it: the backend refills a token bucket, this
 * keeps a log of the requests it let through and checks the limit's
 * definition against it.
 *
 * The definition: a limit of `perSecond` with bursts of `burst` lets through
 * at most `burst + perSecond × T` requests in any span of T seconds. The
 * tightest spans ending now start at a logged request, so a request passes
 * when, for every logged request, the requests since it (this one included)
 * fit that bound.
 */

/** One action's limit. */
export interface RateLimit {
  /** Requests per second, sustained. */
  perSecond: number;
  /** Requests at once, after a quiet spell. */
  burst: number;
}

/** Fly's published limits, by operation id; every other operation gets `DEFAULT_RATE_LIMIT`. */
export const FLY_RATE_LIMITS: Readonly<Record<string, RateLimit>> = { Machines_show: { perSecond: 5, burst: 10 } };
export const DEFAULT_RATE_LIMIT: RateLimit = { perSecond: 1, burst: 3 };

/** A twentieth of a request of slack, so a client pacing to exactly the published rate is not refused over clock jitter. */
export const RATE_SLACK = 0.05;

/**
 * How long a request is remembered, in ms: spans longer than this are not
 * checked, so a client that keeps the limit saturated for longer may get
 * one extra burst through per horizon. No test runs that long.
 */
export const LOG_HORIZON = 60_000;

/** The requests of one action on one app or machine that were let through. */
export class RequestLog {
  /** When each request was let through (ms since epoch), oldest first. */
  private readonly times: number[] = [];

  constructor(
    readonly limit: RateLimit,
    private readonly slack = RATE_SLACK,
    private readonly horizon = LOG_HORIZON,
  ) {
    if (!(limit.perSecond > 0) || !(limit.burst >= 1)) throw new RangeError(`invalid rate limit ${JSON.stringify(limit)}`);
    if (horizon < (limit.burst / limit.perSecond) * 1_000) throw new RangeError(`a log of ${horizon} ms cannot hold a burst of ${limit.burst} at ${limit.perSecond} per second`);
  }

  /**
   * Lets a request through at `now` and logs it, returning 0; or, when the
   * limit forbids it, logs nothing and returns the ms until it would pass.
   */
  admit(now = Date.now()): number {
    // A clock that stepped back counts as standing still, so the log stays in order.
    const at = Math.max(now, this.times.at(-1) ?? -Infinity);
    while (this.times.length > 0 && this.times[0]! <= at - this.horizon) this.times.shift();
    const { perSecond, burst } = this.limit;
    let passesAt = at;
    for (let index = 0; index < this.times.length; index += 1) {
      const since = this.times[index]!;
      const requests = this.times.length - index + 1;
      const allowed = burst + (perSecond * (at - since)) / 1_000 + this.slack;
      if (requests > allowed) passesAt = Math.max(passesAt, since + ((requests - burst - this.slack) / perSecond) * 1_000);
    }
    if (passesAt > at) return Math.ceil(passesAt - at);
    this.times.push(at);
    return 0;
  }

  /** How many requests are remembered (for tests). */
  get size(): number {
    return this.times.length;
  }
}

/** Fly's limits per operation and per app or machine, as the emulator enforces them. */
export class FlyRateLimits {
  private readonly logs = new Map<string, RequestLog>();

  /**
   * Lets a request of `operationId` on `scope` (the machine id, or the app
   * name for app-wide operations such as create and list) through, returning
   * 0, or returns the ms until it would pass.
   */
  admit(operationId: string, scope: string, now = Date.now()): number {
    const key = `${operationId}|${scope}`;
    let log = this.logs.get(key);
    if (!log) {
      log = new RequestLog(FLY_RATE_LIMITS[operationId] ?? DEFAULT_RATE_LIMIT);
      this.logs.set(key, log);
    }
    return log.admit(now);
  }
}

/** The Retry-After header of a 429 for a wait of `wait` ms: whole seconds, rounded up, at least 1. */
export function retryAfterSeconds(wait: number): string {
  return String(Math.max(1, Math.ceil(wait / 1_000)));
}
