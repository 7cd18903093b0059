/**
 * A token bucket: tokens refill continuously at `perSecond` up to `burst`.
 * Fly publishes its Machines API limits in this shape (1 request per second
 * per action, bursts of 3), so the backend paces its creates with one. The
 * emulator enforces the limits with an algorithm of its own (a request log,
 * src/emulators/fly/rate-limit.ts), so a bug here cannot hide in both.
 */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  /**
   * @param perSecond tokens added per second
   * @param burst most tokens the bucket holds (and holds at the start)
   */
  constructor(
    readonly perSecond: number,
    readonly burst: number,
    now = Date.now(),
  ) {
    this.tokens = burst;
    this.updatedAt = now;
  }

  /**
   * Takes a token if one is there, allowing `tolerance` of a token for clock
   * jitter between a client and a server pacing to the same rate. Returns 0
   * when taken, else the milliseconds until a token will be there.
   */
  tryTake(now = Date.now(), tolerance = 0): number {
    this.refill(now);
    if (this.tokens >= 1 - tolerance) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) / this.perSecond) * 1_000);
  }

  /** Milliseconds a `reserve()` made now would wait. */
  delayOfNext(now = Date.now()): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.perSecond) * 1_000);
  }

  /**
   * Reserves the next token, even one not refilled yet, and returns the
   * milliseconds to wait before using it. Concurrent callers queue up in
   * order. A caller that gives up before its turn calls `giveBack()`.
   */
  reserve(now = Date.now()): number {
    const delay = this.delayOfNext(now);
    this.tokens -= 1;
    return delay;
  }

  /** Returns a reserved token that was not used. */
  giveBack(): void {
    this.tokens = Math.min(this.burst, this.tokens + 1);
  }

  private refill(now: number): void {
    if (now > this.updatedAt) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.updatedAt) / 1_000) * this.perSecond);
      this.updatedAt = now;
    }
  }
}
