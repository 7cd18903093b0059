/**
 * What the emulated cluster does with objects once the API layer accepted a
 * request: it stores them (with the registry's defaults), runs pods on the
 * emulated node, deletes pods gracefully, and garbage-collects dependents
 * by their ownerReferences, as kube-controller-manager's garbage collector
 * does.
 */
import { PodRuntime, NODE_NAME, type PodFault, type PodHostSettings } from "./pod.js";
import { timestamp } from "./pod-status.js";
import { checkMetadata, generatedName, RESOURCES, type ResourceType } from "./resources.js";
import type { KubernetesObject } from "./selectors.js";
import { ApiError, notFound, successStatus } from "./status.js";
import { ObjectStore } from "./store.js";

/** DeleteOptions the emulator honours. */
export interface DeleteOptions {
  gracePeriodSeconds?: number;
  propagationPolicy?: "Background" | "Foreground" | "Orphan";
  preconditions?: { uid?: string; resourceVersion?: string };
}

/** A pod registered without a process: the parent itself, running "in a pod". */
export interface ExternalPodSpec {
  name: string;
  namespace?: string;
  image: string;
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  imagePullSecrets?: { name: string }[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  serviceAccountName?: string;
}

/** One pod's runtime, kept after the pod is gone so tests can read what it did. */
export interface PodRecord {
  uid: string;
  namespace: string;
  name: string;
  runtime: PodRuntime;
  deleted: boolean;
}

/** The cluster's state and controllers: the store, the pods' runtimes, graceful deletion and garbage collection. */
export class EmulatedCluster {
  readonly store: ObjectStore;
  /** Every pod that ever ran, oldest first. */
  readonly podRecords: PodRecord[] = [];
  /** Faults of the next pods, one each, in order. */
  readonly podFaults: PodFault[] = [];
  private readonly runtimes = new Map<string, PodRecord>();
  private readonly deletions = new Set<Promise<unknown>>();

  constructor(
    private readonly settings: Omit<PodHostSettings, "store">,
    historyLimit: number,
    namespaces: string[],
  ) {
    this.store = new ObjectStore(historyLimit);
    for (const name of new Set(["default", ...namespaces])) {
      this.store.create("namespaces", {
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name, labels: { "kubernetes.io/metadata.name": name } } as unknown as KubernetesObject["metadata"],
        spec: { finalizers: ["kubernetes"] },
        status: { phase: "Active" },
      });
    }
  }

  /** Stores a new object (name generated from generateName if needed); a pod is then scheduled and started. */
  create(resource: ResourceType, object: KubernetesObject): KubernetesObject {
    const metadata = object.metadata;
    if (!metadata.name && typeof metadata.generateName === "string" && metadata.generateName) metadata.name = generatedName(metadata.generateName);
    checkMetadata(resource.kind, object);
    if (resource.namespaced) this.requireNamespace(metadata.namespace!);
    for (const field of ["uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"]) delete metadata[field];
    resource.prepare?.(object, undefined);
    const stored = this.store.create(resource.name, object);
    if (resource.name === "pods") this.run(stored);
    return stored;
  }

  /** Replaces an object (PUT, or the result of a PATCH); 409 Conflict when `object` names an older resourceVersion. */
  replace(resource: ResourceType, namespace: string | undefined, name: string, object: KubernetesObject): KubernetesObject {
    const current = this.store.get(resource.name, namespace, name);
    if (!current) throw notFound("", resource.name, name);
    const sentVersion = object.metadata.resourceVersion;
    if (sentVersion && sentVersion !== current.metadata.resourceVersion) {
      throw new ApiError(409, "Conflict", `Operation cannot be fulfilled on ${resource.name} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, kind: resource.name });
    }
    if (object.metadata.name !== name) throw new ApiError(400, "BadRequest", `the name of the object (${object.metadata.name}) does not match the name on the URL (${name})`);
    checkMetadata(resource.kind, object);
    resource.prepare?.(object, current);
    return this.store.update(resource.name, namespace, name, (stored) => {
      const keep = stored.metadata;
      for (const key of Object.keys(stored)) delete stored[key];
      Object.assign(stored, object);
      stored.metadata = { ...object.metadata, uid: keep.uid, creationTimestamp: keep.creationTimestamp, resourceVersion: keep.resourceVersion, ...(keep.deletionTimestamp ? { deletionTimestamp: keep.deletionTimestamp } : {}) };
    });
  }

  /**
   * Deletes an object. A running pod is deleted gracefully: it gets
   * deletionTimestamp at once (the answer), its processes SIGTERM then
   * SIGKILL after the grace period, and it leaves the store (DELETED) once
   * its process is gone. Dependents are then collected per `propagationPolicy`.
   */
  async delete(resource: ResourceType, namespace: string | undefined, name: string, options: DeleteOptions): Promise<KubernetesObject | Record<string, unknown>> {
    const current = this.store.get(resource.name, namespace, name);
    if (!current) throw notFound("", resource.name, name);
    const { uid, resourceVersion } = options.preconditions ?? {};
    if (uid && uid !== current.metadata.uid) throw new ApiError(409, "Conflict", `Operation cannot be fulfilled on ${resource.name} "${name}": Precondition failed: UID in precondition: ${uid}, UID in object meta: ${current.metadata.uid}`, { name, kind: resource.name });
    if (resourceVersion && resourceVersion !== current.metadata.resourceVersion) {
      throw new ApiError(409, "Conflict", `Operation cannot be fulfilled on ${resource.name} "${name}": Precondition failed: ResourceVersion in precondition: ${resourceVersion}, ResourceVersion in object meta: ${current.metadata.resourceVersion}`, { name, kind: resource.name });
    }
    const policy = options.propagationPolicy ?? "Background";
    if (policy === "Foreground" && this.store.dependentsOf(current.metadata.uid).length > 0) return this.deleteInForeground(resource, current, options);
    if (resource.name !== "pods") {
      const removed = this.store.remove(resource.name, namespace, name);
      if (removed) this.afterRemoval(removed, policy);
      return successStatus({ name, kind: resource.name, uid: current.metadata.uid } as never);
    }
    const record = this.runtimes.get(current.metadata.uid);
    const spec = current.spec as Record<string, any>;
    const phase = (current.status as Record<string, any> | undefined)?.phase;
    // As the pod strategy decides: an unscheduled or finished pod has nothing to stop and goes at once.
    let grace = options.gracePeriodSeconds ?? spec.terminationGracePeriodSeconds ?? 30;
    if (!spec.nodeName || phase === "Succeeded" || phase === "Failed" || !record?.runtime.running) grace = 0;
    const existing = current.metadata.deletionGracePeriodSeconds as number | undefined;
    if (current.metadata.deletionTimestamp && existing !== undefined && existing <= grace) return current;
    const podUid = current.metadata.uid;
    const removePod = () => {
      const removed = this.store.get("pods", namespace, name)?.metadata.uid === podUid ? this.store.remove("pods", namespace, name) : undefined;
      if (record) record.deleted = true;
      this.runtimes.delete(podUid);
      if (removed) this.afterRemoval(removed, policy);
      return removed;
    };
    if (grace === 0) {
      // Immediate (or forced) deletion: the object goes now, as the API server removes it; the kill follows.
      if (record) this.track(record.runtime.terminate(0));
      return removePod() ?? current;
    }
    const marked = this.store.update("pods", namespace, name, (pod) => {
      pod.metadata.deletionTimestamp = timestamp(Date.now() + grace * 1000);
      pod.metadata.deletionGracePeriodSeconds = grace;
    });
    // Graceful: the pod stays, marked, until its process is gone (the kubelet's confirmation), then leaves the store.
    this.track(
      record!.runtime.terminate(grace * 1000).then(() => void removePod()),
    );
    return marked;
  }

  /**
   * Foreground deletion, as the garbage collector does it: the owner is
   * marked at once (deletionTimestamp, the foregroundDeletion finalizer: the
   * answer), its dependents are deleted and waited for, and then the owner goes.
   */
  private deleteInForeground(resource: ResourceType, owner: KubernetesObject, options: DeleteOptions): KubernetesObject {
    const { namespace, name, uid } = owner.metadata;
    if (((owner.metadata.finalizers ?? []) as string[]).includes("foregroundDeletion")) return owner;
    const marked = this.store.update(resource.name, namespace, name, (object) => {
      object.metadata.deletionTimestamp ??= timestamp();
      object.metadata.finalizers = [...((object.metadata.finalizers ?? []) as string[]), "foregroundDeletion"];
    });
    this.track(
      (async () => {
        await this.collectDependents(uid, "Foreground");
        if (this.store.get(resource.name, namespace, name)?.metadata.uid !== uid) return;
        await this.delete(resource, namespace, name, { ...options, propagationPolicy: "Background", preconditions: { uid } });
      })(),
    );
    return marked;
  }

  /** Resolves once no object of `resource` named `name` with `uid` is stored. */
  private removal(resource: string, namespace: string | undefined, name: string, uid: string): Promise<void> {
    if (this.store.get(resource, namespace, name)?.metadata.uid !== uid) return Promise.resolve();
    return new Promise((resolve) => {
      const stop = this.store.subscribe((event) => {
        if (event.type === "DELETED" && event.object.metadata.uid === uid) {
          stop();
          resolve();
        }
      });
    });
  }

  /** Registers a pod with no process behind it, Running on the emulated node. */
  addExternalPod(spec: ExternalPodSpec): KubernetesObject {
    const namespace = spec.namespace ?? "default";
    this.requireNamespace(namespace);
    const pod: KubernetesObject = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: spec.name, namespace, ...(spec.labels ? { labels: spec.labels } : {}), ...(spec.annotations ? { annotations: spec.annotations } : {}) } as unknown as KubernetesObject["metadata"],
      spec: {
        containers: [{ name: "app", image: spec.image, ...(spec.imagePullPolicy ? { imagePullPolicy: spec.imagePullPolicy } : {}) }],
        ...(spec.imagePullSecrets ? { imagePullSecrets: spec.imagePullSecrets } : {}),
        ...(spec.serviceAccountName ? { serviceAccountName: spec.serviceAccountName } : {}),
        nodeName: NODE_NAME,
      },
    };
    checkMetadata("Pod", pod);
    RESOURCES.pods!.prepare!(pod, undefined);
    const now = timestamp();
    pod.status = {
      ...(pod.status as object),
      phase: "Running",
      hostIP: "127.0.0.1",
      hostIPs: [{ ip: "127.0.0.1" }],
      podIP: "127.0.0.1",
      podIPs: [{ ip: "127.0.0.1" }],
      startTime: now,
      conditions: ["Initialized", "Ready", "ContainersReady", "PodScheduled"].map((type) => ({ type, status: "True", lastProbeTime: null, lastTransitionTime: now })),
      containerStatuses: [{ name: "app", state: { running: { startedAt: now } }, lastState: {}, ready: true, restartCount: 0, image: spec.image, imageID: "", started: true }],
    };
    return this.store.create("pods", pod);
  }

  /** Evicts a running pod (phase Failed, reason Evicted). */
  evict(namespace: string, name: string, message?: string): void {
    const pod = this.store.get("pods", namespace, name);
    const record = pod && this.runtimes.get(pod.metadata.uid);
    if (!record) throw new Error(`no pod ${namespace}/${name} runs in the emulator`);
    record.runtime.evict(message);
  }

  /** The runtime of a stored pod, for its log. */
  runtimeOf(uid: string): PodRuntime | undefined {
    return this.runtimes.get(uid)?.runtime;
  }

  /** Kills every pod process and waits for the exits. */
  async close(): Promise<void> {
    await Promise.all([...this.runtimes.values()].map((record) => record.runtime.kill()));
    await Promise.allSettled([...this.deletions]);
  }

  private requireNamespace(namespace: string): void {
    if (!this.store.get("namespaces", undefined, namespace)) throw notFound("", "namespaces", namespace);
  }

  private run(pod: KubernetesObject): void {
    const runtime = new PodRuntime(pod.metadata.namespace!, pod.metadata.name, { ...this.settings, store: this.store }, this.podFaults.shift());
    const record: PodRecord = { uid: pod.metadata.uid, namespace: pod.metadata.namespace!, name: pod.metadata.name, runtime, deleted: false };
    this.runtimes.set(pod.metadata.uid, record);
    this.podRecords.push(record);
    runtime.start();
  }

  /** The garbage collector's part once an owner is gone. */
  private afterRemoval(owner: KubernetesObject, policy: DeleteOptions["propagationPolicy"]): void {
    if (policy === "Orphan") {
      for (const { resource, object } of this.store.dependentsOf(owner.metadata.uid)) {
        this.store.update(resource, object.metadata.namespace, object.metadata.name, (dependent) => {
          dependent.metadata.ownerReferences = dependent.metadata.ownerReferences?.filter((reference) => reference.uid !== owner.metadata.uid);
          if (dependent.metadata.ownerReferences?.length === 0) delete dependent.metadata.ownerReferences;
        });
      }
      return;
    }
    this.track(this.collectDependents(owner.metadata.uid, "Background"));
  }

  /** Deletes the dependents of `uid` that have no other owner left. */
  private async collectDependents(uid: string, policy: "Background" | "Foreground"): Promise<void> {
    await Promise.all(
      this.store.dependentsOf(uid).map(async ({ resource, object }) => {
        const otherOwners = (object.metadata.ownerReferences ?? []).filter((reference) => reference.uid !== uid && this.store.hasUid(reference.uid));
        if (otherOwners.length > 0) return;
        try {
          await this.delete(RESOURCES[resource]!, object.metadata.namespace, object.metadata.name, { propagationPolicy: policy });
          // In the foreground the owner waits for its dependents to be gone, not just to be going.
          if (policy === "Foreground") await this.removal(resource, object.metadata.namespace, object.metadata.name, object.metadata.uid);
        } catch (error) {
          // Deleted meanwhile by someone else: nothing left to collect.
          if (!(error instanceof ApiError && error.code === 404)) throw error;
        }
      }),
    );
  }

  private track(promise: Promise<unknown>): void {
    const settled = promise.catch(() => undefined).finally(() => this.deletions.delete(settled));
    this.deletions.add(settled);
  }
}
