/**
 * core/v1 Events about pods, as the scheduler and the kubelet record them
 * (Scheduled, FailedScheduling, Pulled, Created, Started, Killing, BackOff,
 * Evicted, ...), so `kubectl describe pod` and a client that reads events
 * to explain a stuck pod see what a cluster would show.
 */
import { randomBytes } from "node:crypto";
import type { KubernetesObject } from "./selectors.js";
import type { ObjectStore } from "./store.js";

/** Who reports an event: the scheduler (binding) or the node's kubelet. */
export type EventSource = "default-scheduler" | "kubelet";

/** Stores one Event about `pod`; `container` sets the fieldPath the kubelet gives container events. */
export function recordPodEvent(
  store: ObjectStore,
  pod: KubernetesObject,
  type: "Normal" | "Warning",
  reason: string,
  message: string,
  options: { source?: EventSource; container?: string; node?: string } = {},
): void {
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const source = options.source ?? "kubelet";
  try {
    store.create("events", {
      apiVersion: "v1",
      kind: "Event",
      // Like client-go's recorder: the object's name and a unique hexadecimal suffix.
      metadata: { name: `${pod.metadata.name}.${randomBytes(8).toString("hex")}`, namespace: pod.metadata.namespace } as unknown as KubernetesObject["metadata"],
      involvedObject: {
        kind: "Pod",
        namespace: pod.metadata.namespace,
        name: pod.metadata.name,
        uid: pod.metadata.uid,
        apiVersion: "v1",
        resourceVersion: pod.metadata.resourceVersion,
        ...(options.container ? { fieldPath: `spec.containers{${options.container}}` } : {}),
      },
      reason,
      message,
      source: { component: source, ...(source === "kubelet" && options.node ? { host: options.node } : {}) },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      type,
      eventTime: null,
      reportingComponent: source,
      reportingInstance: source === "kubelet" ? (options.node ?? "") : "",
    });
  } catch {
    // An event is best effort, as the recorder's are: losing one must not disturb the pod.
  }
}
