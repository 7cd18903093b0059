/**
 * The processes a soak starts, found through /proc: the runners chaos can hit,
 * and whatever is left at the end. Runners are marked with an environment
 * variable that their own children inherit, so a process that outlived its
 * parent and was re-parented away from us is still found (and killed).
 */
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { descendantPids, isAlive } from "../../test/support/processes.js";

/** The environment variable that marks every process of one soak run. */
export const RUN_MARKER_VARIABLE = "FLAME_SOAK_RUN";

export function newRunMarker(): string {
  return randomUUID();
}

/** Runner processes of this parent: its children running the runner agent. */
export function runnerPids(): number[] {
  return childPids().filter((pid) => commandLine(pid).includes("runner-agent/main"));
}

/** Whether `pid` is stopped (SIGSTOP), read from /proc; false when it is gone. */
export function isStopped(pid: number): boolean {
  return processState(pid) === "T";
}

/**
 * Processes of this run still alive: descendants of this process that were not
 * there before the run (tsx's own esbuild service is), and any process carrying
 * the run's marker wherever it was re-parented.
 */
export function leftoverPids(marker: string, presentBefore: ReadonlySet<number>): number[] {
  const found = new Set(descendantPids().filter((pid) => !presentBefore.has(pid)));
  for (const pid of markedPids(marker)) found.add(pid);
  return [...found].filter(isAlive).sort((a, b) => a - b);
}

/** SIGKILLs each pid (after SIGCONT, in case chaos froze it); gone ones are skipped. */
export function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    for (const signal of ["SIGCONT", "SIGKILL"] as const) {
      try {
        process.kill(pid, signal);
      } catch {
        // Already gone.
      }
    }
  }
}

function childPids(): number[] {
  return descendantPids().filter((pid) => parentPid(pid) === process.pid);
}

function markedPids(marker: string): number[] {
  const needle = `${RUN_MARKER_VARIABLE}=${marker}\0`;
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/environ`, "latin1").includes(needle)) found.push(pid);
    } catch {
      // Gone, or not ours to read.
    }
  }
  return found;
}

/** Fields after the parenthesised command in /proc/<pid>/stat: state, ppid, ... */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

function processState(pid: number): string | undefined {
  return statFields(pid)?.[0];
}

function parentPid(pid: number): number | undefined {
  const ppid = statFields(pid)?.[1];
  return ppid === undefined ? undefined : Number(ppid);
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}
