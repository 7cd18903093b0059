/**
 * The pool's runners and the questions routing and scaling ask of them.
 *
 * Routing and scaling ask on every call, so neither scans: runners that take
 * calls are filed in buckets by load (the least-loaded one is the head of
 * the lowest non-empty bucket), and the count of active runners is kept as
 * they change. A runner tells the set (through the Scheduler's
 * RunnerEvents.changed) whenever its load, lifecycle or connection changes.
 *
 * Buckets are intrusive linked lists of the set's own entries, not Sets: a
 * call moves its runner twice (placed, answered), and Set insertions and
 * deletions were a fifth of the parent's routing time at 50 runners.
 */
import { LinkedList, type Linked } from "./linked-list.js";
import type { Runner } from "./runner.js";

/** What the set knows of one runner: where it is filed, and whether it counts towards `max`. */
class Entry implements Linked<Entry> {
  /** The bucket it is in (its load when filed); -1: not routable. */
  filedAt = -1;
  previous: Entry | undefined;
  next: Entry | undefined;
  active = false;
  constructor(readonly runner: Runner) {}
}

export class RunnerSet {
  /** By runner id: each runner and what the set knows of it. */
  private readonly entries = new Map<string, Entry>();
  /** byLoad[n]: runners taking calls with n calls in flight, in the order they got there. */
  private readonly byLoad: Array<LinkedList<Entry>> = [];
  /** No bucket below this one holds a runner. */
  private lowest = 0;
  private active = 0;

  add(runner: Runner): void {
    this.entries.set(runner.id, new Entry(runner));
    this.update(runner);
  }

  delete(runner: Runner): void {
    const entry = this.entries.get(runner.id);
    if (entry?.runner !== runner) return;
    this.unfile(entry);
    if (entry.active) this.active -= 1;
    this.entries.delete(runner.id);
  }

  /** Re-files `runner` after a change: under its current load, or out of routing if it takes no calls. */
  update(runner: Runner): void {
    const entry = this.entries.get(runner.id);
    if (entry?.runner !== runner) return;
    const active = runner.state === "ready" || runner.state === "booting";
    if (active !== entry.active) {
      entry.active = active;
      this.active += active ? 1 : -1;
    }
    const load = runner.acceptsCalls ? runner.load : -1;
    if (load === entry.filedAt) return;
    this.unfile(entry);
    if (load >= 0) this.file(entry, load);
  }

  private file(entry: Entry, load: number): void {
    while (this.byLoad.length <= load) this.byLoad.push(new LinkedList<Entry>());
    this.byLoad[load]!.push(entry);
    entry.filedAt = load;
    if (load < this.lowest) this.lowest = load;
  }

  private unfile(entry: Entry): void {
    if (entry.filedAt < 0) return;
    this.byLoad[entry.filedAt]!.remove(entry);
    entry.filedAt = -1;
  }

  has(runnerId: string): boolean {
    return this.entries.has(runnerId);
  }

  get size(): number {
    return this.entries.size;
  }

  *values(): IterableIterator<Runner> {
    for (const entry of this.entries.values()) yield entry.runner;
  }

  /** The ready runner with the fewest calls, if it has a free slot. */
  leastLoaded(maxConcurrency: number): Runner | undefined {
    const end = Math.min(maxConcurrency, this.byLoad.length);
    let load = this.lowest;
    while (load < end) {
      const entry = this.byLoad[load]!.head;
      if (!entry) {
        load += 1;
        continue;
      }
      this.lowest = load;
      // A socket that began to close says so before its runner reports the close: check, and file it away.
      if (entry.runner.acceptsCalls) return entry.runner;
      this.update(entry.runner);
    }
    this.lowest = load;
    return undefined;
  }

  /** Runners that count towards `max`: booting or ready (draining and stopping ones are on their way out). */
  activeCount(): number {
    return this.active;
  }

  bootingCount(): number {
    let count = 0;
    for (const runner of this.values()) if (runner.state === "booting") count += 1;
    return count;
  }

  bootingIds(): string[] {
    return [...this.values()].filter((runner) => runner.state === "booting").map((runner) => runner.id);
  }

  /** Calls in flight over all runners, abandoned ones included. */
  totalLoad(): number {
    let load = 0;
    for (const runner of this.values()) load += runner.load;
    return load;
  }

  /** Worker threads of each connected runner, and the calls in flight on it. */
  threads(): { total: number; runners: Array<{ runnerId: string; threads: number; load: number }> } {
    const runners: Array<{ runnerId: string; threads: number; load: number }> = [];
    let total = 0;
    for (const runner of this.values()) {
      if (runner.state === "booting" || runner.state === "exited") continue;
      total += runner.threads;
      runners.push({ runnerId: runner.id, threads: runner.threads, load: runner.load });
    }
    return { total, runners };
  }

  countByState() {
    const counts = { total: 0, booting: 0, ready: 0, busy: 0, idle: 0, draining: 0, stopping: 0 };
    for (const runner of this.values()) {
      if (runner.state === "exited") continue;
      counts.total += 1;
      counts[runner.state] += 1;
      if (runner.state === "ready") counts[runner.load > 0 ? "busy" : "idle"] += 1;
    }
    return counts;
  }
}
