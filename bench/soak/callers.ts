/**
 * The soak's callers: loops that each make one call at a time, of a kind
 * picked at random, await it, and enter its outcome in the ledger. They stop
 * making calls when `stop` fires; the call in hand is left to settle.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { Pool } from "../../src/index.js";
import type { SoakFunctions } from "./app.js";
import type { CallKind, CallLedger } from "./ledger.js";
import type { Random } from "./random.js";

/** What chaos may do to any call: its runner killed (before or after it connected), or frozen past the pool's timeout. */
const CHAOS_OUTCOMES = ["RunnerExitedError", "BootError", "BootTimeoutError", "CallTimeoutError"];

/**
 * The outcomes each kind may have; anything else is a bug. A placed child has
 * no timeout (placeChild's contract), so CallTimeoutError is not among its own.
 */
export const EXPECTED_OUTCOMES: Record<CallKind | "cast", readonly string[]> = {
  echo: ["ok", ...CHAOS_OUTCOMES],
  sleep: ["ok", ...CHAOS_OUTCOMES],
  timeout: ["ok", ...CHAOS_OUTCOMES],
  abort: ["ok", "CallAbortedError", ...CHAOS_OUTCOMES],
  cast: ["ok", ...CHAOS_OUTCOMES],
  child: ["ok", "RunnerExitedError", "BootError", "BootTimeoutError"],
  // The stop may lose the race with the child's own end on a slow machine: then it is "ok".
  "child-stopped": ["ok", "CallAbortedError", "RunnerExitedError", "BootError", "BootTimeoutError"],
};

/** Kinds that succeed whenever chaos spares them: a soak where none did never did real work. */
export const MUST_SUCCEED: readonly (CallKind | "cast")[] = ["echo", "sleep", "child", "cast"];

/** Relative frequency of each kind: mostly quick calls, so the pool is under steady load. */
const KIND_WEIGHTS: readonly [CallKind | "cast", number][] = [
  ["echo", 40],
  ["sleep", 20],
  ["timeout", 10],
  ["abort", 10],
  ["cast", 14],
  ["child", 3],
  ["child-stopped", 3],
];
const TOTAL_WEIGHT = KIND_WEIGHTS.reduce((sum, [, weight]) => sum + weight, 0);

export interface CallerContext {
  pool: Pool;
  functions: SoakFunctions;
  ledger: CallLedger;
  random: Random;
  /** Fires when callers should stop making new calls. */
  stop: AbortSignal;
}

/** One caller: makes calls back to back until `stop` fires. */
export async function runCaller(context: CallerContext): Promise<void> {
  while (!context.stop.aborted) await makeOneCall(context);
}

async function makeOneCall({ pool, functions, ledger, random }: CallerContext): Promise<void> {
  const kind = pickKind(random);
  const { echo, sleep } = functions;
  switch (kind) {
    case "echo":
      return ledger.track(kind, () => echo({ n: random.integer(0, 1_000_000), text: "soak" }));
    case "sleep":
      return ledger.track(kind, () => sleep(random.integer(1, 20)));
    case "timeout":
      // About half outlive their timeout.
      return ledger.track(kind, () => pool.call(sleep, [random.integer(0, 60)], { timeout: 30 }));
    case "abort": {
      const controller = new AbortController();
      // One in ten is aborted before it is made: the pool must refuse it at once.
      const abortAfter = random.next() < 0.1 ? 0 : random.integer(1, 40);
      if (abortAfter === 0) controller.abort(new Error("aborted before the call"));
      else setTimeout(() => controller.abort(new Error("caller gave up")), abortAfter);
      return ledger.track(kind, () => pool.call(sleep, [random.integer(0, 60)], { signal: controller.signal }));
    }
    case "cast":
      ledger.casts += 1;
      pool.cast(echo, [{ n: ledger.casts, text: "cast" }]);
      // Casts do not wait for anything: pause so a caller cannot flood the queue while runners are down.
      await delay(random.integer(1, 3));
      return;
    case "child":
      return ledger.track(kind, async () => {
        const child = await pool.placeChild(sleep, [random.integer(50, 400)]);
        await child.done;
      });
    case "child-stopped":
      return ledger.track(kind, async () => {
        const child = await pool.placeChild(sleep, [random.integer(200, 400)]);
        setTimeout(() => child.stop(), random.integer(0, 100));
        await child.done;
      });
  }
}

function pickKind(random: Random): CallKind | "cast" {
  let roll = random.next() * TOTAL_WEIGHT;
  for (const [kind, weight] of KIND_WEIGHTS) {
    roll -= weight;
    if (roll < 0) return kind;
  }
  return "echo";
}
