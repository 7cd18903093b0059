/**
 * The pool's runners and the questions routing and scaling ask of them.
 */
import type { Runner } from "./runner.js";

export class RunnerSet {
  private readonly runners = new Map<string, Runner>();

  add(runner: Runner): void {
    this.runners.set(runner.id, runner);
  }

  delete(runner: Runner): void {
    this.runners.delete(runner.id);
  }

  has(runnerId: string): boolean {
    return this.runners.has(runnerId);
  }

  get size(): number {
    return this.runners.size;
  }

  values(): IterableIterator<Runner> {
    return this.runners.values();
  }

  /** The ready runner with the fewest calls, if it has a free slot. */
  leastLoaded(maxConcurrency: number): Runner | undefined {
    let best: Runner | undefined;
    for (const runner of this.runners.values()) {
      if (!runner.acceptsCalls || runner.load >= maxConcurrency) continue;
      if (!best || runner.load < best.load) best = runner;
    }
    return best;
  }

  /** Runners that count towards `max`: booting or ready (draining and stopping ones are on their way out). */
  activeCount(): number {
    let count = 0;
    for (const runner of this.runners.values()) if (runner.state === "ready" || runner.state === "booting") count += 1;
    return count;
  }

  bootingCount(): number {
    let count = 0;
    for (const runner of this.runners.values()) if (runner.state === "booting") count += 1;
    return count;
  }

  bootingIds(): string[] {
    return [...this.runners.values()].filter((runner) => runner.state === "booting").map((runner) => runner.id);
  }

  /** Calls in flight over all runners, abandoned ones included. */
  totalLoad(): number {
    let load = 0;
    for (const runner of this.runners.values()) load += runner.load;
    return load;
  }

  /** Worker threads of each connected runner, and the calls in flight on it. */
  threads(): { total: number; runners: Array<{ runnerId: string; threads: number; load: number }> } {
    const runners: Array<{ runnerId: string; threads: number; load: number }> = [];
    let total = 0;
    for (const runner of this.runners.values()) {
      if (runner.state === "booting" || runner.state === "exited") continue;
      total += runner.threads;
      runners.push({ runnerId: runner.id, threads: runner.threads, load: runner.load });
    }
    return { total, runners };
  }

  countByState() {
    const counts = { total: 0, booting: 0, ready: 0, busy: 0, idle: 0, draining: 0, stopping: 0 };
    for (const runner of this.runners.values()) {
      if (runner.state === "exited") continue;
      counts.total += 1;
      counts[runner.state] += 1;
      if (runner.state === "ready") counts[runner.load > 0 ? "busy" : "idle"] += 1;
    }
    return counts;
  }
}
