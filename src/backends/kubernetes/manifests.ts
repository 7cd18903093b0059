/**
 * The two objects a runner is made of: a Secret holding its FLAME_PARENT (the
 * one-time token lives nowhere else: not in the pod spec, which anyone who
 * can `get pods` reads) and the pod that runs the runner agent from it.
 * Labels carry the pool, parent and runner ids so `list` and `reap` find
 * them; names and label values are made to fit Kubernetes' rules, with the
 * exact ids kept in annotations.
 */
import { createHash } from "node:crypto";
import { RUNNER_ENV_VAR } from "../../protocol/runner-env.js";
import type { ProvisionRequest } from "../backend.js";
import { runnerCommand, runnerEnvironment } from "../runner-launch.js";
import type { KubernetesObject, ResolvedKubernetesOptions } from "./options.js";

/** Label (and annotation) keys the backend writes on every runner object and selects by. */
export const LABELS = {
  managedBy: "app.kubernetes.io/managed-by",
  pool: "flame-ts.dev/pool",
  parent: "flame-ts.dev/parent",
  runner: "flame-ts.dev/runner",
} as const;

export const MANAGED_BY = "flame-ts";

/** The container every runner pod runs the agent in. */
export const RUNNER_CONTAINER = "runner";

/** What the backend learnt of the parent pod: what runners inherit and whom they belong to. */
export interface ParentPod {
  name: string;
  uid: string;
  image: string | undefined;
  imagePullPolicy: string | undefined;
  imagePullSecrets: { name: string }[] | undefined;
}

/** A label value for any string: Kubernetes' characters, at most 63, and a digest where the id had to change. */
export function labelValue(id: string): string {
  const cleaned = id.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, "");
  if (cleaned === id && id.length <= 63) return id;
  const digest = createHash("sha256").update(id).digest("hex").slice(0, 8);
  return `${cleaned.slice(0, 54).replace(/[^A-Za-z0-9]+$/, "")}-${digest}`.replace(/^-/, "");
}

/** The pod's name: a DNS label (lowercase, at most 63), unique per runner. */
export function podName(runnerId: string): string {
  const base = `flame-${runnerId}`.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/-+$/, "");
  if (base.length <= 63 && base === `flame-${runnerId}`) return base;
  const digest = createHash("sha256").update(runnerId).digest("hex").slice(0, 8);
  return `${base.slice(0, 54).replace(/-+$/, "")}-${digest}`;
}

/** The Secret holding a runner's FLAME_PARENT: named after its pod. */
export function secretName(runnerId: string): string {
  return `${podName(runnerId)}-parent`;
}

/** Labels that select one parent's runners (the watch's selector). */
export function parentSelector(parentId: string): string {
  return `${LABELS.managedBy}=${MANAGED_BY},${LABELS.parent}=${labelValue(parentId)}`;
}

function runnerLabels(request: Pick<ProvisionRequest, "pool" | "parentId" | "runnerId">): Record<string, string> {
  return {
    [LABELS.managedBy]: MANAGED_BY,
    [LABELS.pool]: labelValue(request.pool),
    [LABELS.parent]: labelValue(request.parentId),
    [LABELS.runner]: labelValue(request.runnerId),
  };
}

/** The exact ids, which labels may have had to shorten. */
function runnerAnnotations(request: Pick<ProvisionRequest, "pool" | "parentId" | "runnerId">): Record<string, string> {
  return { [LABELS.pool]: request.pool, [LABELS.parent]: request.parentId, [LABELS.runner]: request.runnerId };
}

/** An owner reference to a pod. No blockOwnerDeletion: setting it needs rights on the owner's finalizers, and nothing here waits on it. */
export function podOwner(name: string, uid: string): KubernetesObject {
  return { apiVersion: "v1", kind: "Pod", name, uid };
}

/** The owner references of a runner's objects: the parent pod, when known and `ownerReferences` is on. */
export function ownedBy(parent: ParentPod | undefined, options: Pick<ResolvedKubernetesOptions, "ownerReferences">): KubernetesObject[] | undefined {
  if (!parent || !options.ownerReferences) return undefined;
  return [podOwner(parent.name, parent.uid)];
}

/** The runner's Secret: FLAME_PARENT, owned by the parent pod (and, once it exists, by the runner's pod). */
export function runnerSecret(request: ProvisionRequest, parent: ParentPod | undefined, options: ResolvedKubernetesOptions): KubernetesObject {
  const ownerReferences = ownedBy(parent, options);
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: secretName(request.runnerId),
      labels: runnerLabels(request),
      annotations: runnerAnnotations(request),
      ...(ownerReferences ? { ownerReferences } : {}),
    },
    type: "Opaque",
    data: { [RUNNER_ENV_VAR]: Buffer.from(request.env[RUNNER_ENV_VAR] ?? "").toString("base64") },
  };
}

/** The runner's pod: the agent in the parent's image, FLAME_PARENT from the Secret, no API credentials, never restarted. */
export function runnerPod(request: ProvisionRequest, parent: ParentPod | undefined, options: ResolvedKubernetesOptions & { image: string }): KubernetesObject {
  const { [RUNNER_ENV_VAR]: _token, ...publicEnv } = runnerEnvironment(request, options.env);
  const env: KubernetesObject[] = [
    ...Object.entries(publicEnv).map(([name, value]) => ({ name, value })),
    { name: RUNNER_ENV_VAR, valueFrom: { secretKeyRef: { name: secretName(request.runnerId), key: RUNNER_ENV_VAR } } },
  ];
  const imagePullPolicy = options.imagePullPolicy ?? (options.image === parent?.image ? parent?.imagePullPolicy : undefined);
  const imagePullSecrets = options.imagePullSecrets?.map((name) => ({ name })) ?? parent?.imagePullSecrets;
  const ownerReferences = ownedBy(parent, options);
  const container: KubernetesObject = {
    name: RUNNER_CONTAINER,
    image: options.image,
    ...(imagePullPolicy ? { imagePullPolicy } : {}),
    command: options.command ?? runnerCommand(request.entry),
    env,
    ...(options.envFrom.length > 0 ? { envFrom: options.envFrom } : {}),
    ...(options.resources ? { resources: options.resources } : {}),
    ...(options.volumeMounts.length > 0 ? { volumeMounts: options.volumeMounts } : {}),
  };
  const pod: KubernetesObject = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: podName(request.runnerId),
      labels: { ...options.labels, ...runnerLabels(request) },
      annotations: { ...options.annotations, ...runnerAnnotations(request) },
      ...(ownerReferences ? { ownerReferences } : {}),
    },
    spec: {
      restartPolicy: "Never",
      // Runners call no API: the parent creates and deletes them. Without a token mounted, runner code cannot either.
      automountServiceAccountToken: false,
      ...(options.serviceAccountName ? { serviceAccountName: options.serviceAccountName } : {}),
      terminationGracePeriodSeconds: options.terminationGracePeriodSeconds,
      ...(imagePullSecrets && imagePullSecrets.length > 0 ? { imagePullSecrets } : {}),
      ...(options.nodeSelector ? { nodeSelector: options.nodeSelector } : {}),
      ...(options.tolerations ? { tolerations: options.tolerations } : {}),
      ...(options.affinity ? { affinity: options.affinity } : {}),
      ...(options.volumes.length > 0 ? { volumes: options.volumes } : {}),
      containers: [container],
    },
  };
  return options.podTemplate ? options.podTemplate(pod) : pod;
}
