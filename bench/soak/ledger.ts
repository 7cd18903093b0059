/**
 * The soak's ledger: every call a caller makes is entered here when made and
 * crossed off when it settles, with its outcome: "ok" or the error's class
 * name. Whatever is still open at the end never settled, which is the bug a
 * soak exists to find.
 */

/** The call kinds the callers make (see callers.ts). */
export const CALL_KINDS = ["echo", "sleep", "timeout", "abort", "child", "child-stopped"] as const;
export type CallKind = (typeof CALL_KINDS)[number];

interface OpenCall {
  kind: CallKind;
  madeAt: number;
}

/** A call that had not settled when the soak gave up waiting. */
export interface UnsettledCall {
  kind: CallKind;
  /** How long it had been open, in ms. */
  ageMs: number;
}

export class CallLedger {
  /** Outcomes by kind: "ok" or an error class name, with their counts. */
  readonly outcomes = new Map<CallKind, Map<string, number>>();
  /** The first message seen for each error outcome (by "kind outcome"), to tell a finding from noise. */
  readonly firstMessages = new Map<string, string>();
  private readonly open = new Map<number, OpenCall>();
  private nextId = 1;
  private made = 0;
  /** Casts submitted; they settle out of our sight, so the soak checks them through `pool.stats()`. */
  casts = 0;
  /** Casts that reached `onCastError`, by error class. */
  readonly castErrors = new Map<string, number>();

  /** Enters `call` and crosses it off when it settles. Never rejects. */
  async track(kind: CallKind, call: () => Promise<unknown>): Promise<void> {
    const id = this.nextId++;
    this.made += 1;
    this.open.set(id, { kind, madeAt: Date.now() });
    let outcome: string;
    try {
      await call();
      outcome = "ok";
    } catch (error) {
      outcome = outcomeClass(error);
      this.noteMessage(kind, outcome, error);
    }
    this.open.delete(id);
    const byOutcome = this.outcomes.get(kind) ?? new Map<string, number>();
    byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + 1);
    this.outcomes.set(kind, byOutcome);
  }

  recordCastError(error: unknown): void {
    const outcome = outcomeClass(error);
    this.noteMessage("cast", outcome, error);
    this.castErrors.set(outcome, (this.castErrors.get(outcome) ?? 0) + 1);
  }

  /** Tracked calls made (casts not included). */
  get madeCount(): number {
    return this.made;
  }

  /** Tracked calls settled (casts not included). */
  get settledCount(): number {
    return this.made - this.open.size;
  }

  get openCount(): number {
    return this.open.size;
  }

  /** The calls still open, oldest first. */
  unsettled(now = Date.now()): UnsettledCall[] {
    return [...this.open.values()].map((call) => ({ kind: call.kind, ageMs: now - call.madeAt })).sort((a, b) => b.ageMs - a.ageMs);
  }

  private noteMessage(kind: string, outcome: string, error: unknown): void {
    const key = `${kind} ${outcome}`;
    if (!this.firstMessages.has(key)) this.firstMessages.set(key, error instanceof Error ? error.message : String(error));
  }
}

/** "ok"'s counterpart: the error's class name, plus the remote name for errors thrown by the function itself. */
export function outcomeClass(error: unknown): string {
  if (!(error instanceof Error)) return `non-Error ${typeof error}`;
  const remoteName = (error as { remoteName?: unknown }).remoteName;
  return typeof remoteName === "string" ? `${error.name}(${remoteName})` : error.name;
}
