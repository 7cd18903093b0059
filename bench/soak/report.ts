/**
 * The soak's figures, its verdict, and the short summary printed on stdout.
 * The verdict is the soak's point: every call settled, no process left
 * behind, and the pool did real work.
 */
import { EXPECTED_OUTCOMES, MUST_SUCCEED } from "./callers.js";
import type { ChaosTally } from "./chaos.js";
import { CALL_KINDS, type CallLedger, type UnsettledCall } from "./ledger.js";

export interface SoakFigures {
  meta: { seed: number; seconds: number; callers: number; node: string; platform: string; cpus: number; startedAt: string };
  /** Whether an interrupt cut the calling short (such a run does not pass). */
  interrupted: boolean;
  /** Seconds the callers were calling (chaos ran meanwhile). */
  callingSeconds: number;
  /** Seconds from start to verdict: calling, settling, stopping, counting processes. */
  totalSeconds: number;
  calls: {
    made: number;
    settled: number;
    neverSettled: number;
    /** Settled calls and casts per second of calling. */
    perSecond: number;
    byOutcome: Record<string, number>;
    byKind: Record<string, Record<string, number>>;
    /** The oldest calls that never settled (at most 20). */
    unsettled: UnsettledCall[];
  };
  casts: { made: number; settled: number; neverSettled: number; errors: Record<string, number> };
  /** Outcomes a kind should never have (see EXPECTED_OUTCOMES in callers.ts), with the first message seen. */
  unexpected: { kind: string; outcome: string; count: number; message: string }[];
  /** The first message of each error outcome, by "kind outcome". */
  firstMessages: Record<string, string>;
  chaos: ChaosTally;
  pool: { stopSettled: boolean; stopSeconds: number; runnersBooted: number; bootFailures: number; shrinks: Record<string, number> };
  processes: { left: number; pids: number[] };
  /** Unhandled rejections and uncaught exceptions in the parent: each one is a bug. */
  unhandled: { rejections: number; exceptions: number; first: string[] };
  log: { warn: number; error: number };
  verdict: { passed: boolean; reasons: string[] };
}

/** Figures from the ledger, as far as they go; the caller adds the rest. */
export function callFigures(
  ledger: CallLedger,
  castsSettled: number,
  callingSeconds: number,
): Pick<SoakFigures, "calls" | "casts" | "unexpected" | "firstMessages"> {
  const message = (kind: string, outcome: string) => ledger.firstMessages.get(`${kind} ${outcome}`) ?? "";
  const byKind: Record<string, Record<string, number>> = {};
  const byOutcome: Record<string, number> = {};
  const unexpected: SoakFigures["unexpected"] = [];
  for (const kind of CALL_KINDS) {
    const outcomes = Object.fromEntries(ledger.outcomes.get(kind) ?? []);
    byKind[kind] = outcomes;
    for (const [outcome, count] of Object.entries(outcomes)) {
      byOutcome[outcome] = (byOutcome[outcome] ?? 0) + count;
      if (!EXPECTED_OUTCOMES[kind].includes(outcome)) unexpected.push({ kind, outcome, count, message: message(kind, outcome) });
    }
  }
  const castErrors = Object.fromEntries(ledger.castErrors);
  const castErrorCount = Object.values(castErrors).reduce((sum, count) => sum + count, 0);
  byKind.cast = { ok: castsSettled - castErrorCount, ...castErrors };
  for (const [outcome, count] of Object.entries(castErrors)) {
    if (!EXPECTED_OUTCOMES.cast.includes(outcome)) unexpected.push({ kind: "cast", outcome, count, message: message("cast", outcome) });
  }
  return {
    calls: {
      made: ledger.madeCount,
      settled: ledger.settledCount,
      neverSettled: ledger.openCount,
      perSecond: Math.round((ledger.settledCount + castsSettled) / callingSeconds),
      byOutcome,
      byKind,
      unsettled: ledger.unsettled().slice(0, 20),
    },
    casts: { made: ledger.casts, settled: castsSettled, neverSettled: ledger.casts - castsSettled, errors: castErrors },
    unexpected,
    firstMessages: Object.fromEntries(ledger.firstMessages),
  };
}

/** Why the soak failed; empty when it passed. */
export function failureReasons(figures: Omit<SoakFigures, "verdict">): string[] {
  const reasons: string[] = [];
  if (figures.interrupted) reasons.push(`interrupted after ${figures.callingSeconds} s of ${figures.meta.seconds}`);
  if (figures.calls.neverSettled > 0) reasons.push(`${figures.calls.neverSettled} call(s) never settled`);
  if (figures.casts.neverSettled > 0) reasons.push(`${figures.casts.neverSettled} cast(s) never settled`);
  if (figures.processes.left > 0) reasons.push(`${figures.processes.left} process(es) left behind: ${figures.processes.pids.join(", ")}`);
  if (!figures.pool.stopSettled) reasons.push(`pool.stop() had not resolved after ${figures.pool.stopSeconds} s`);
  if (figures.chaos.resizesUnsettled > 0) reasons.push(`${figures.chaos.resizesUnsettled} pool.resize() call(s) never settled`);
  for (const kind of MUST_SUCCEED) {
    if ((figures.calls.byKind[kind]?.ok ?? 0) <= 0) reasons.push(`no "${kind}" call succeeded: the pool did no real work`);
  }
  for (const { kind, outcome, count, message } of figures.unexpected) {
    reasons.push(`${count} "${kind}" call(s) ended with ${outcome}, which that kind should never get (first: ${message})`);
  }
  if (figures.unhandled.rejections + figures.unhandled.exceptions > 0) {
    reasons.push(`${figures.unhandled.rejections} unhandled rejection(s) and ${figures.unhandled.exceptions} uncaught exception(s) in the parent`);
  }
  return reasons;
}

/** The human summary: a few lines on stdout. */
export function formatSummary(figures: SoakFigures): string {
  const { calls, casts, chaos, pool, processes } = figures;
  const outcomes = Object.entries(calls.byOutcome)
    .sort(([, a], [, b]) => b - a)
    .map(([outcome, count]) => `${outcome} ${count}`)
    .join(", ");
  const castOutcomes = Object.entries(calls.byKind.cast ?? {})
    .filter(([, count]) => count > 0)
    .map(([outcome, count]) => `${outcome} ${count}`)
    .join(", ");
  const shrinks = Object.entries(pool.shrinks).map(([reason, count]) => `${reason} ${count}`);
  const lines = [
    `Chaos soak: ${figures.meta.callers} callers for ${figures.callingSeconds} s (seed ${figures.meta.seed}), ${figures.totalSeconds} s in all`,
    `  calls made      ${calls.made} + ${casts.made} casts, ${calls.perSecond}/s`,
    `  settled         ${calls.settled} calls: ${outcomes || "none"}`,
    `                  ${casts.settled} casts: ${castOutcomes || "none"}`,
    `  never settled   ${calls.neverSettled} + ${casts.neverSettled} casts`,
    `  chaos           ${chaos.kills} SIGKILLs, ${chaos.freezes} SIGSTOPs, ${chaos.resizes} resizes${chaos.resizeErrors.length > 0 ? ` (${chaos.resizeErrors.length} rejected)` : ""}, ${chaos.noVictim} turns without a runner to hit`,
    `  runners         ${pool.runnersBooted} booted, ${pool.bootFailures} boots failed; left: ${shrinks.join(", ") || "none"}; stop() ${pool.stopSettled ? `took ${pool.stopSeconds} s` : "never resolved"}`,
    `  processes left  ${processes.left}${processes.left > 0 ? ` (${processes.pids.join(", ")}, killed)` : ""}`,
  ];
  if (calls.unsettled.length > 0) {
    lines.push(`  oldest unsettled: ${calls.unsettled.slice(0, 5).map((call) => `${call.kind} (${(call.ageMs / 1000).toFixed(1)} s)`).join(", ")}`);
  }
  lines.push(figures.verdict.passed ? "PASS" : `FAIL: ${figures.verdict.reasons.join("; ")}`);
  return lines.join("\n");
}
