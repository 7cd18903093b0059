/**
 * An intrusive doubly-linked list: its nodes carry their own links, so
 * adding at the tail and removing any node are O(1) and allocate nothing.
 * The per-call structures use it (RunnerSet's load buckets, the Deadlines'
 * lists), where a Set's inserts and deletes cost more than the work around
 * them. A node is in at most one list at a time; only the list writes its links.
 */

/** What a node of a LinkedList carries; the links belong to the list it is in. */
export interface Linked<T> {
  previous: T | undefined;
  next: T | undefined;
}

export class LinkedList<T extends Linked<T>> {
  private first: T | undefined;
  private last: T | undefined;

  /** The oldest node, if any. */
  get head(): T | undefined {
    return this.first;
  }

  get isEmpty(): boolean {
    return this.first === undefined;
  }

  /** Appends `node`, which must be in no list. */
  push(node: T): void {
    node.previous = this.last;
    node.next = undefined;
    if (this.last) this.last.next = node;
    else this.first = node;
    this.last = node;
  }

  /** Takes out `node`, which must be in this list. */
  remove(node: T): void {
    if (node.previous) node.previous.next = node.next;
    else this.first = node.next;
    if (node.next) node.next.previous = node.previous;
    else this.last = node.previous;
    node.previous = node.next = undefined;
  }
}
