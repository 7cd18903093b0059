/**
 * A container's processes as one group: started detached so that a signal
 * reaches every process the container started, as a kill of its cgroup does.
 */
import type { ChildProcess } from "node:child_process";

/** Sends `signal` to the child's whole process group (it was spawned detached, as its group's leader). */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is gone already.
  }
}

/** A command that writes a line to stderr and exits with `exitCode` at once. */
export function crashCommand(exitCode: number): string[] {
  return [process.execPath, "-e", `process.stderr.write("emulated crash at start\\n"); process.exit(${exitCode})`];
}

/** The number of a signal, for the 128+n exit code a container killed by it reports. */
export function signalNumber(signal: NodeJS.Signals | null): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
  return (signal && numbers[signal]) ?? 0;
}
