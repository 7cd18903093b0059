/**
 * The emulator's etcd: every object by resource, namespace and name, one
 * global resourceVersion counter, and a bounded history of changes that
 * watches replay from ("send every change after resourceVersion N"). A watch
 * from a resourceVersion older than the history still holds is told 410
 * Expired, as a compacted etcd makes the real API server say.
 */
import { randomUUID } from "node:crypto";
import type { KubernetesObject } from "./selectors.js";
import { alreadyExists, notFound } from "./status.js";

/** One change, as watches report it. */
export interface StoreEvent {
  type: "ADDED" | "MODIFIED" | "DELETED";
  /** Plural resource name, e.g. "pods". */
  resource: string;
  object: KubernetesObject;
  /** The object before a MODIFIED, for watches whose selector it stopped (or started) matching. */
  previous?: KubernetesObject;
  revision: number;
}

/** The objects, their resourceVersions and the change history; every write goes through it. */
export class ObjectStore {
  private revision = 0;
  private readonly objects = new Map<string, KubernetesObject>();
  private readonly history: StoreEvent[] = [];
  /** Events up to this revision are forgotten: a watch from before it has expired. */
  private forgottenThrough = 0;
  private readonly listeners = new Set<(event: StoreEvent) => void>();

  constructor(private readonly historyLimit: number) {}

  /** The newest resourceVersion, as a list's `metadata.resourceVersion` says. */
  get resourceVersion(): string {
    return String(this.revision);
  }

  /** The oldest resourceVersion a watch can still start from. */
  get oldestWatchable(): number {
    return this.forgottenThrough;
  }

  get(resource: string, namespace: string | undefined, name: string): KubernetesObject | undefined {
    const found = this.objects.get(key(resource, namespace, name));
    return found && structuredClone(found);
  }

  /** Objects of `resource` (in `namespace`, or all), ordered by namespace and name as etcd's keys are. */
  list(resource: string, namespace?: string): KubernetesObject[] {
    const prefix = namespace === undefined ? `${resource}/` : `${resource}/${namespace}/`;
    return [...this.objects.entries()]
      .filter(([objectKey]) => objectKey.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, object]) => structuredClone(object));
  }

  /** Every stored object that lists `uid` among its ownerReferences. */
  dependentsOf(uid: string): { resource: string; object: KubernetesObject }[] {
    return [...this.objects.entries()]
      .filter(([, object]) => object.metadata.ownerReferences?.some((reference) => reference.uid === uid))
      .map(([objectKey, object]) => ({ resource: objectKey.slice(0, objectKey.indexOf("/")), object: structuredClone(object) }));
  }

  /** Whether any object has this uid. */
  hasUid(uid: string): boolean {
    for (const object of this.objects.values()) if (object.metadata.uid === uid) return true;
    return false;
  }

  /** Stores a new object, giving it uid, resourceVersion and creationTimestamp; 409 AlreadyExists on a taken name. */
  create(resource: string, object: KubernetesObject): KubernetesObject {
    const { namespace, name } = object.metadata;
    const objectKey = key(resource, namespace, name);
    if (this.objects.has(objectKey)) throw alreadyExists("", resource, name);
    const stored = structuredClone(object);
    stored.metadata.uid = randomUUID();
    stored.metadata.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    stored.metadata.resourceVersion = this.nextRevision();
    this.objects.set(objectKey, stored);
    this.emit({ type: "ADDED", resource, object: structuredClone(stored), revision: this.revision });
    return structuredClone(stored);
  }

  /** Changes an object in place through `mutate` (given a copy) and bumps its resourceVersion; 404 when it is gone. */
  update(resource: string, namespace: string | undefined, name: string, mutate: (object: KubernetesObject) => void): KubernetesObject {
    const objectKey = key(resource, namespace, name);
    const current = this.objects.get(objectKey);
    if (!current) throw notFound("", resource, name);
    const next = structuredClone(current);
    mutate(next);
    // Identity is the store's, whatever the mutation did.
    next.metadata.uid = current.metadata.uid;
    next.metadata.name = current.metadata.name;
    next.metadata.creationTimestamp = current.metadata.creationTimestamp;
    if (namespace !== undefined) next.metadata.namespace = namespace;
    next.metadata.resourceVersion = this.nextRevision();
    this.objects.set(objectKey, next);
    this.emit({ type: "MODIFIED", resource, object: structuredClone(next), previous: structuredClone(current), revision: this.revision });
    return structuredClone(next);
  }

  /** Removes an object; the DELETED event carries the deletion's own resourceVersion, as etcd's does. */
  remove(resource: string, namespace: string | undefined, name: string): KubernetesObject | undefined {
    const objectKey = key(resource, namespace, name);
    const current = this.objects.get(objectKey);
    if (!current) return undefined;
    this.objects.delete(objectKey);
    const removed = structuredClone(current);
    removed.metadata.resourceVersion = this.nextRevision();
    this.emit({ type: "DELETED", resource, object: structuredClone(removed), revision: this.revision });
    return removed;
  }

  /**
   * The events after `revision`, or "expired" when some of them are forgotten.
   * Subscribing in the same turn (no await between) loses nothing.
   */
  eventsAfter(revision: number): StoreEvent[] | "expired" {
    if (revision < this.forgottenThrough) return "expired";
    return this.history.filter((event) => event.revision > revision).map((event) => structuredClone(event));
  }

  /** Calls `listener` with every change from now on; returns the unsubscribe function. */
  subscribe(listener: (event: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Forgets the whole history, as etcd compaction does: watches from any older resourceVersion get 410. */
  compact(): void {
    this.history.length = 0;
    this.forgottenThrough = this.revision;
  }

  private nextRevision(): string {
    this.revision += 1;
    return String(this.revision);
  }

  private emit(event: StoreEvent): void {
    this.history.push(event);
    while (this.history.length > this.historyLimit) this.forgottenThrough = this.history.shift()!.revision;
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        // One broken watch must not stop the others or the write that caused the event.
      }
    }
  }
}

function key(resource: string, namespace: string | undefined, name: string): string {
  return namespace === undefined ? `${resource}//${name}` : `${resource}/${namespace}/${name}`;
}
