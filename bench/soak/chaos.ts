/**
 * The soak's chaos: every 1-3 s, SIGKILL a random runner (65%), freeze one
 * with SIGSTOP for 2-5 s (20%; often past the pool's 3 s call timeout), or
 * resize the pool to random valid limits (15%). It runs until `stop` fires,
 * then thaws whatever it froze, so the pool can settle and stop cleanly.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { Pool } from "../../src/index.js";
import { settlesWithin } from "./bounded.js";
import { isStopped, runnerPids } from "./processes.js";
import type { Random } from "./random.js";

export interface ChaosContext {
  pool: Pool;
  random: Random;
  /** The largest `max` a resize may pick (and `min` is at most 2, below it). */
  maxRunners: number;
  /** Fires when chaos should end. */
  stop: AbortSignal;
  /** Told each action as it happens (the soak's --verbose). */
  onAction?: (description: string) => void;
}

export interface ChaosTally {
  kills: number;
  freezes: number;
  resizes: number;
  /** Resizes that rejected (their error class names). */
  resizeErrors: string[];
  /** Resizes still pending when chaos was over and had waited for them. */
  resizesUnsettled: number;
  /** Turns where the chosen action found no runner to hit. */
  noVictim: number;
}

/** How long chaos waits for its own pending resizes once it stops, in ms. */
const RESIZE_SETTLE_TIMEOUT = 10_000;

/** Starts chaos; `tally` counts as it goes, `done` resolves once chaos stopped, thawed and waited for its resizes. */
export function startChaos(context: ChaosContext): { tally: ChaosTally; done: Promise<void> } {
  const tally: ChaosTally = { kills: 0, freezes: 0, resizes: 0, resizeErrors: [], resizesUnsettled: 0, noVictim: 0 };
  return { tally, done: runChaos(context, tally) };
}

async function runChaos({ pool, random, maxRunners, stop, onAction = () => undefined }: ChaosContext, tally: ChaosTally): Promise<void> {
  const frozen = new Map<number, NodeJS.Timeout>();
  const pendingResizes = new Set<Promise<void>>();

  const thaw = (pid: number) => {
    clearTimeout(frozen.get(pid));
    frozen.delete(pid);
    if (signal(pid, "SIGCONT")) onAction(`SIGCONT ${pid}`);
  };

  while (!stop.aborted) {
    try {
      await delay(random.integer(1_000, 3_000), undefined, { signal: stop });
    } catch {
      break; // stop fired during the pause
    }
    const roll = random.next();
    if (roll < 0.65) {
      const victim = pickRunner(random);
      if (victim === undefined) tally.noVictim += 1;
      else if (signal(victim, "SIGKILL")) {
        tally.kills += 1;
        onAction(`SIGKILL ${victim}`);
      }
    } else if (roll < 0.85) {
      const victim = pickRunner(random, (pid) => !frozen.has(pid) && !isStopped(pid));
      if (victim === undefined) tally.noVictim += 1;
      else if (signal(victim, "SIGSTOP")) {
        tally.freezes += 1;
        const frozenFor = random.integer(2_000, 5_000);
        frozen.set(victim, setTimeout(() => thaw(victim), frozenFor));
        onAction(`SIGSTOP ${victim} for ${frozenFor} ms`);
      }
    } else {
      const min = random.integer(0, 2);
      const max = random.integer(Math.max(1, min), maxRunners);
      tally.resizes += 1;
      onAction(`resize to min ${min}, max ${max}`);
      // Not awaited: a resize that boots runners takes a while, and chaos keeps its pace meanwhile.
      const resize = pool.resize({ min, max }).catch((error: Error) => void tally.resizeErrors.push(error.name));
      pendingResizes.add(resize);
      void resize.finally(() => pendingResizes.delete(resize));
    }
  }

  for (const pid of [...frozen.keys()]) thaw(pid);
  await settlesWithin(Promise.all(pendingResizes), RESIZE_SETTLE_TIMEOUT);
  tally.resizesUnsettled = pendingResizes.size;
}

function pickRunner(random: Random, eligible: (pid: number) => boolean = () => true): number | undefined {
  const candidates = runnerPids().filter(eligible);
  return candidates.length > 0 ? random.pick(candidates) : undefined;
}

/** Sends `name` to `pid`; false when the process is already gone. */
function signal(pid: number, name: NodeJS.Signals): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}
