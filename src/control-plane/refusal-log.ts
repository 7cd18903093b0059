/**
 * Warnings about connections the control plane refused. A flood would
 * otherwise become a flood of log lines, so each reason is logged at most once
 * per interval, with how many were refused silently since its last line.
 */
import type { Logger } from "../log.js";

/** Why the control plane refused a connection; logged as the `reason` field. */
export type RefusalReason =
  | "connection-limit"
  | "runner-limit"
  | "handshake-window"
  | "unauthorized"
  | "malformed-request"
  | "not-websocket";

const DESCRIPTIONS: Record<RefusalReason, string> = {
  "connection-limit": "too many unauthenticated connections at once; closed on arrival",
  "runner-limit": "too many refused upgrades in flight for one runner id; closed without an answer",
  "handshake-window": "no authenticated WebSocket upgrade within the handshake window",
  unauthorized: "upgrade without a runner id and token the parent is expecting (401)",
  "malformed-request": "malformed HTTP request (400)",
  "not-websocket": "plain HTTP request, not a WebSocket upgrade (426)",
};

/** At most one warning per reason in this many ms. */
export const REFUSAL_LOG_INTERVAL = 10_000;

/** Rate-limited `warn` lines about refused connections, one stream per reason. */
export class RefusalLog {
  private readonly lastReport = new Map<RefusalReason, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly interval = REFUSAL_LOG_INTERVAL,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Records one refusal of `peer` ("address:port"). Only the peer and the
   * reason are logged: what the peer sent (its token above all) never is.
   */
  refused(reason: RefusalReason, peer: string): void {
    const now = this.now();
    const last = this.lastReport.get(reason);
    if (last && now - last.at < this.interval) {
      last.suppressed += 1;
      return;
    }
    const suppressed = last?.suppressed ?? 0;
    this.lastReport.set(reason, { at: now, suppressed: 0 });
    const more = suppressed > 0 ? ` (and ${suppressed} more for this reason since the last report)` : "";
    this.log.warn({ reason, peer, ...(suppressed > 0 ? { suppressed } : {}) }, `control plane refused a connection from ${peer}: ${DESCRIPTIONS[reason]}${more}`);
  }
}
