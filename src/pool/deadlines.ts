/**
 * The pool's call deadlines (execution timeouts, waits for a runner) on one
 * timer per distinct duration, instead of one Timeout per call.
 *
 * Almost every call of a pool has the same timeout, so the deadlines of one
 * duration come due in the order they were added: each duration keeps a FIFO
 * list (linked-list.ts, so a call that settles leaves it in O(1)) and one
 * timer, armed for its head. A Timeout per call cost an object
 * and an async-resource init, and Node's timer list work twice per call (set,
 * then cleared by the result); here a call costs one small node, and the
 * timer is touched only when it fires.
 *
 * When a duration has no deadline left its timer stays armed, unref'd, until
 * it fires and finds nothing (then the list goes): a steady trickle of calls
 * re-arms nothing, and an idle process is not held up by a timer.
 */

import { LinkedList, type Linked } from "./linked-list.js";

/** A deadline in a list; its owner keeps it to cancel it. */
export class Deadline implements Linked<Deadline> {
  previous: Deadline | undefined;
  next: Deadline | undefined;
  /** Removed from its list (expired or cancelled): cancelling it again does nothing. */
  done = false;
  constructor(
    /** performance.now() when it comes due. */
    readonly dueAt: number,
    /** @internal */
    readonly list: DeadlineList,
    readonly onExpire: () => void,
  ) {}
}

/** The deadlines of one duration, due in the order they were added, and the timer for the first. */
export class DeadlineList {
  private readonly deadlines = new LinkedList<Deadline>();
  private timer: NodeJS.Timeout | undefined;
  private count = 0;

  constructor(
    readonly duration: number,
    private readonly fired: (list: DeadlineList) => void,
  ) {}

  get isEmpty(): boolean {
    return this.deadlines.isEmpty;
  }

  get size(): number {
    return this.count;
  }

  add(onExpire: () => void): Deadline {
    const deadline = new Deadline(performance.now() + this.duration, this, onExpire);
    // A deadline keeps the process up, as the call's own Timeout did.
    if (this.deadlines.isEmpty) this.timer?.ref();
    this.deadlines.push(deadline);
    this.count += 1;
    // Deadlines of one duration only grow: a timer armed for an earlier one fires first and re-arms.
    if (this.timer === undefined) this.arm(deadline.dueAt);
    return deadline;
  }

  remove(deadline: Deadline): void {
    if (deadline.done) return;
    deadline.done = true;
    this.deadlines.remove(deadline);
    this.count -= 1;
    if (this.deadlines.isEmpty) this.timer?.unref();
  }

  private arm(dueAt: number): void {
    this.timer = setTimeout(() => this.fire(), Math.max(1, Math.ceil(dueAt - performance.now())));
  }

  /** Expires every deadline that is due, oldest first, then waits for the next one. */
  private fire(): void {
    this.timer = undefined;
    const now = performance.now();
    for (let due = this.deadlines.head; due && due.dueAt <= now; due = this.deadlines.head) {
      this.remove(due);
      // An owner that throws must not strand the deadlines after it; its error is still thrown, outside this loop.
      try {
        due.onExpire();
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    const next = this.deadlines.head;
    if (next) this.arm(next.dueAt);
    else this.fired(this);
  }
}

export class Deadlines {
  private readonly lists = new Map<number, DeadlineList>();
  /** A list whose timer fired and found it empty is dropped, so one-off durations do not pile up. */
  private readonly dropIfEmpty = (list: DeadlineList) => {
    if (list.isEmpty && this.lists.get(list.duration) === list) this.lists.delete(list.duration);
  };

  /** Runs `onExpire` `duration` ms from now (finite, at least 0), unless the returned deadline is cancelled first. */
  add(duration: number, onExpire: () => void): Deadline {
    let list = this.lists.get(duration);
    if (!list) {
      list = new DeadlineList(duration, this.dropIfEmpty);
      this.lists.set(duration, list);
    }
    return list.add(onExpire);
  }

  /** Deadlines waiting to come due; with none, no timer holds the process up. */
  get pending(): number {
    let pending = 0;
    for (const list of this.lists.values()) pending += list.size;
    return pending;
  }

  /** Cancels `deadline`; one that expired or was cancelled is left as it is. */
  cancel(deadline: Deadline | undefined): void {
    if (deadline) deadline.list.remove(deadline);
  }
}
