/**
 * The resources the emulator serves, each with what the API server knows of
 * it: its kind, scope, verbs (for discovery), the schema it is validated
 * against, the defaults and checks applied when it is written (the
 * registry's strategy, in apiserver terms), and its table columns for
 * `kubectl get`.
 */
import type { ValidatedKind } from "./schema.js";
import { isLabelKey, isLabelValue, type KubernetesObject } from "./selectors.js";
import { ApiError, invalid } from "./status.js";

/** One served resource. */
export interface ResourceType {
  /** Plural, as in URLs: "pods". */
  name: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  verbs: string[];
  shortNames?: string[];
  /** Schema the objects written are checked against, when validation is on. */
  schema?: ValidatedKind;
  /** Defaults and semantic checks of a write; throws a 422 ApiError for an object the API server refuses. */
  prepare?(object: KubernetesObject, previous: KubernetesObject | undefined): void;
}

const ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/** The core/v1 resources the emulator stores. */
export const RESOURCES: Record<string, ResourceType> = {
  pods: { name: "pods", singular: "pod", kind: "Pod", namespaced: true, verbs: ALL_VERBS, shortNames: ["po"], schema: "Pod", prepare: preparePod },
  secrets: { name: "secrets", singular: "secret", kind: "Secret", namespaced: true, verbs: ALL_VERBS, schema: "Secret", prepare: prepareSecret },
  configmaps: { name: "configmaps", singular: "configmap", kind: "ConfigMap", namespaced: true, verbs: ALL_VERBS, shortNames: ["cm"], schema: "ConfigMap", prepare: prepareConfigMap },
  events: { name: "events", singular: "event", kind: "Event", namespaced: true, verbs: ["get", "list", "watch"], shortNames: ["ev"] },
  namespaces: { name: "namespaces", singular: "namespace", kind: "Namespace", namespaced: false, verbs: ["get", "list", "watch"], shortNames: ["ns"] },
};

/** The subresources served, for discovery: pods/log. */
export const SUBRESOURCES = [{ name: "pods/log", kind: "Pod", namespaced: true, verbs: ["get"] }];

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The metadata checks every object gets: its name (a DNS subdomain), its labels. */
export function checkMetadata(kind: string, object: KubernetesObject): void {
  const { name, labels } = object.metadata;
  const causes: { field: string; message: string }[] = [];
  if (!name) causes.push({ field: "metadata.name", message: "Required value: name or generateName is required" });
  else if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    causes.push({
      field: "metadata.name",
      message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
    });
  }
  for (const [key, value] of Object.entries(labels ?? {})) {
    if (!isLabelKey(key)) causes.push({ field: "metadata.labels", message: `Invalid value: "${key}": name part must consist of alphanumeric characters, '-', '_' or '.'` });
    if (typeof value !== "string" || !isLabelValue(value)) causes.push({ field: "metadata.labels", message: `Invalid value: "${String(value)}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character` });
  }
  if (causes.length > 0) throw invalid(kind, name ?? "", causes);
}

function preparePod(pod: KubernetesObject, previous: KubernetesObject | undefined): void {
  const spec = ((pod.spec ??= {}) as Record<string, any>);
  if (previous) {
    // Pod specs are immutable but for a few fields; the emulator allows none (the backend changes none).
    const before = previous.spec as Record<string, any>;
    if (JSON.stringify({ ...spec, activeDeadlineSeconds: undefined }) !== JSON.stringify({ ...before, activeDeadlineSeconds: undefined })) {
      throw invalid("Pod", pod.metadata.name, [{ field: "spec", message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)" }]);
    }
    pod.status = previous.status;
    return;
  }
  const containers = (spec.containers ?? []) as Record<string, any>[];
  const causes: { field: string; message: string }[] = [];
  if (containers.length === 0) causes.push({ field: "spec.containers", message: "Required value" });
  if (containers.length > 1) causes.push({ field: "spec.containers", message: "Forbidden: the flame-ts Kubernetes emulator runs pods of one container only" });
  if ((spec.initContainers ?? []).length > 0) causes.push({ field: "spec.initContainers", message: "Forbidden: init containers are not supported by the flame-ts Kubernetes emulator" });
  containers.forEach((container, index) => {
    if (!container.name) causes.push({ field: `spec.containers[${index}].name`, message: "Required value" });
    else if (!DNS_LABEL.test(container.name) || container.name.length > 63) causes.push({ field: `spec.containers[${index}].name`, message: `Invalid value: "${container.name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character` });
    if (!container.image) causes.push({ field: `spec.containers[${index}].image`, message: "Required value" });
    for (const [position, variable] of ((container.env ?? []) as Record<string, any>[]).entries()) {
      const from = variable.valueFrom as Record<string, unknown> | undefined;
      if (from && variable.value !== undefined) causes.push({ field: `spec.containers[${index}].env[${position}].valueFrom`, message: "Invalid value: \"\": may not be specified when `value` is not empty" });
      if (from && Object.keys(from).length !== 1) causes.push({ field: `spec.containers[${index}].env[${position}].valueFrom`, message: "Invalid value: \"\": may not have more than one field specified at a time" });
    }
  });
  const restartPolicy = spec.restartPolicy ?? "Always";
  if (!["Always", "OnFailure", "Never"].includes(restartPolicy)) causes.push({ field: "spec.restartPolicy", message: `Unsupported value: "${restartPolicy}": supported values: "Always", "OnFailure", "Never"` });
  if (causes.length > 0) throw invalid("Pod", pod.metadata.name, causes);
  // The defaults the API server fills in, so a read-back looks like a real cluster's.
  spec.restartPolicy = restartPolicy;
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= "ClusterFirst";
  spec.schedulerName ??= "default-scheduler";
  spec.serviceAccountName ??= spec.serviceAccount ?? "default";
  spec.serviceAccount = spec.serviceAccountName;
  spec.securityContext ??= {};
  spec.enableServiceLinks ??= true;
  spec.priority ??= 0;
  spec.preemptionPolicy ??= "PreemptLowerPriority";
  spec.tolerations ??= [
    { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
    { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
  ];
  for (const container of containers) {
    container.terminationMessagePath ??= "/dev/termination-log";
    container.terminationMessagePolicy ??= "File";
    container.resources ??= {};
    container.imagePullPolicy ??= /:latest$/.test(container.image) || !/:[^/]+$/.test(String(container.image).split("@")[0]!) ? "Always" : "IfNotPresent";
  }
  const resources = containers.map((container) => container.resources ?? {});
  const guaranteed = resources.every((entry) => entry.limits && entry.requests && JSON.stringify(entry.limits) === JSON.stringify(entry.requests));
  const anySet = resources.some((entry) => Object.keys(entry.limits ?? {}).length > 0 || Object.keys(entry.requests ?? {}).length > 0);
  // Status is the kubelet's: whatever the client sent is dropped, as the pod strategy does.
  pod.status = { phase: "Pending", qosClass: !anySet ? "BestEffort" : guaranteed ? "Guaranteed" : "Burstable" };
}

function prepareSecret(secret: KubernetesObject): void {
  // stringData is write-only: folded into data, as the API server does.
  const stringData = secret.stringData as Record<string, string> | undefined;
  if (stringData) {
    secret.data = { ...((secret.data ?? {}) as Record<string, string>) };
    for (const [key, value] of Object.entries(stringData)) (secret.data as Record<string, string>)[key] = Buffer.from(String(value), "utf8").toString("base64");
    delete secret.stringData;
  }
  secret.type ??= "Opaque";
  const causes: { field: string; message: string }[] = [];
  let size = 0;
  for (const [key, value] of Object.entries((secret.data ?? {}) as Record<string, string>)) {
    if (!/^[-._a-zA-Z0-9]+$/.test(key)) causes.push({ field: `data[${key}]`, message: `Invalid value: "${key}": a valid config key must consist of alphanumeric characters, '-', '_' or '.'` });
    size += Buffer.byteLength(String(value), "base64");
  }
  if (size > 1_048_576) causes.push({ field: "data", message: "Too long: must have at most 1048576 bytes" });
  if (causes.length > 0) throw invalid("Secret", secret.metadata.name, causes);
}

function prepareConfigMap(configMap: KubernetesObject): void {
  const causes: { field: string; message: string }[] = [];
  for (const key of [...Object.keys((configMap.data ?? {}) as object), ...Object.keys((configMap.binaryData ?? {}) as object)]) {
    if (!/^[-._a-zA-Z0-9]+$/.test(key)) causes.push({ field: `data[${key}]`, message: `Invalid value: "${key}": a valid config key must consist of alphanumeric characters, '-', '_' or '.'` });
  }
  if (causes.length > 0) throw invalid("ConfigMap", configMap.metadata.name, causes);
}

/** Names `generateName` makes: the prefix and five random characters of the API server's alphabet. */
export function generatedName(prefix: string): string {
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  let suffix = "";
  for (let i = 0; i < 5; i += 1) suffix += alphabet[Math.floor(Math.random() * alphabet.length)];
  return `${prefix.slice(0, 58)}${suffix}`;
}

/** A kind's Table for `kubectl get`: its rows and the column definitions the API server prints. */
export function toTable(resource: ResourceType, objects: KubernetesObject[], listResourceVersion: string, includeObject: string | null): Record<string, unknown> {
  const columns = resource.name === "pods" ? POD_COLUMNS : [column("Name", "name"), column("Age", "string")];
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: { resourceVersion: listResourceVersion },
    columnDefinitions: columns,
    rows: objects.map((object) => ({
      cells: resource.name === "pods" ? podCells(object) : [object.metadata.name, age(object)],
      object:
        includeObject === "None"
          ? undefined
          : includeObject === "Object"
            ? object
            : { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: object.metadata },
    })),
  };
}

function column(name: string, type: string, priority = 0, format = ""): Record<string, unknown> {
  return { name, type, format: name === "Name" ? "name" : format, description: "", priority };
}

const POD_COLUMNS = [
  column("Name", "string"),
  column("Ready", "string"),
  column("Status", "string"),
  column("Restarts", "string"),
  column("Age", "string"),
  column("IP", "string", 1),
  column("Node", "string", 1),
  column("Nominated Node", "string", 1),
  column("Readiness Gates", "string", 1),
];

function podCells(pod: KubernetesObject): unknown[] {
  const status = (pod.status ?? {}) as Record<string, any>;
  const containers = ((pod.spec as Record<string, any>)?.containers ?? []) as unknown[];
  const statuses = (status.containerStatuses ?? []) as Record<string, any>[];
  const ready = statuses.filter((entry) => entry.ready).length;
  const waiting = statuses.find((entry) => entry.state?.waiting?.reason)?.state.waiting.reason as string | undefined;
  const terminated = statuses.find((entry) => entry.state?.terminated)?.state.terminated as Record<string, any> | undefined;
  let shown = String(status.reason ?? waiting ?? (terminated && status.phase !== "Succeeded" && status.phase !== "Failed" ? terminated.reason : undefined) ?? status.phase ?? "Pending");
  if (status.phase === "Succeeded" || status.phase === "Failed") shown = String(status.reason ?? terminated?.reason ?? status.phase);
  if (pod.metadata.deletionTimestamp) shown = "Terminating";
  const restarts = statuses.reduce((total, entry) => total + Number(entry.restartCount ?? 0), 0);
  return [pod.metadata.name, `${ready}/${containers.length}`, shown, restarts, age(pod), status.podIP ?? "<none>", (pod.spec as Record<string, any>)?.nodeName ?? "<none>", "<none>", "<none>"];
}

/** The age kubectl shows: "42s", "3m12s", "2h5m", "4d". */
function age(object: KubernetesObject): string {
  const created = Date.parse(String(object.metadata.creationTimestamp ?? ""));
  const seconds = Number.isNaN(created) ? 0 : Math.max(0, Math.floor((Date.now() - created) / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours}h` : `${Math.floor(hours / 24)}d`;
}

/** Thrown for a resource the emulator does not serve. */
export function unknownResource(): ApiError {
  return new ApiError(404, "NotFound", "the server could not find the requested resource", {});
}
