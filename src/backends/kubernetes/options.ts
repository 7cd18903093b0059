/**
 * KubernetesBackend's options: declared, documented, defaulted and validated
 * here once. Durations are in ms. Pod-spec fragments (tolerations, affinity,
 * volumes...) are taken as the Kubernetes API objects they are and checked
 * by the API server, which knows their schema better than a copy here would.
 */
import * as v from "valibot";
import { milliseconds, parseOptions } from "../../validation.js";
import { controlPlaneSchema, type ControlPlaneOptions } from "../control-plane-options.js";

/** A Kubernetes API object or fragment, as JSON. */
export type KubernetesObject = Record<string, unknown>;

/** Compute resources of the runner container; quantities as Kubernetes writes them ("500m", "2Gi", 1). */
export interface KubernetesResources {
  requests?: Record<string, string | number>;
  /** Extended resources go here too, e.g. `{ "nvidia.com/gpu": 1 }`. */
  limits?: Record<string, string | number>;
}

/** Options of `new KubernetesBackend(options)` (all in docs/kubernetes.md). */
export interface KubernetesBackendOptions {
  /**
   * Namespace runner pods are created in. Default: env POD_NAMESPACE, else the
   * service account's namespace (in a pod), else the kubeconfig context's,
   * else "default".
   */
  namespace?: string;
  /** A kubeconfig to use instead of in-cluster credentials. Default: in-cluster, else $KUBECONFIG, else ~/.kube/config. */
  kubeconfig?: string;
  /** The kubeconfig context. Default: its current-context. */
  context?: string;
  /**
   * The parent's own pod, whose image, pull policy and pull secrets runners
   * reuse, and which owns them. `name` default: env POD_NAME (set it through
   * the downward API); `container` default: the pod's first container.
   * `false` when the parent does not run in a pod (then `image` is required).
   */
  parentPod?: { name?: string; container?: string } | false;
  /** Image of runner pods. Default: the parent container's, so runners run the same build. */
  image?: string;
  /** Default: the parent container's (else the cluster's default). */
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  /** Names of image pull Secrets. Default: the parent pod's. */
  imagePullSecrets?: string[];
  /** Command of the runner container. Default: the parent's node, flags and agent path, which exist in the parent's image. */
  command?: string[];
  resources?: KubernetesResources;
  nodeSelector?: Record<string, string>;
  /** Pod tolerations, as in a pod spec. */
  tolerations?: KubernetesObject[];
  /** Pod affinity, as in a pod spec. */
  affinity?: KubernetesObject;
  /** Service account of runner pods. Default: none mounted (`automountServiceAccountToken: false`): runners need no API rights. */
  serviceAccountName?: string;
  /** Extra labels of runner pods (keys under flame-ts.dev/ are the backend's own). */
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Environment of runners (they do not inherit the parent's). */
  env?: Record<string, string>;
  /** Container `envFrom` entries, e.g. `[{ secretRef: { name: "app-secrets" } }]`. */
  envFrom?: KubernetesObject[];
  /** Pod volumes, and where the runner container mounts them. */
  volumes?: KubernetesObject[];
  volumeMounts?: KubernetesObject[];
  /** Anything else: given the finished pod manifest, returns the one to create. */
  podTemplate?: (pod: KubernetesObject) => KubernetesObject;
  /**
   * Owner references from runner pods and their Secrets to the parent pod, so
   * deleting the parent (a rollout, a crash and reschedule) garbage-collects
   * them. Default true when the parent pod is known.
   */
  ownerReferences?: boolean;
  /** Seconds a deleted runner pod gets between SIGTERM and SIGKILL. Default 10. */
  terminationGracePeriodSeconds?: number;
  /**
   * How long a runner pod may stay unschedulable (no node fits) before its
   * boot fails with FLAME_KUBERNETES_CAPACITY, in ms. Default 30 000; raise it
   * when a cluster autoscaler adds nodes.
   */
  unschedulableGrace?: number;
  /**
   * Where the parent listens and what runners dial. Defaults: `host` and
   * `advertisedHost` env POD_IP (the parent pod's IP, from the downward API),
   * `port` 3526 (a fixed port a NetworkPolicy can name), `tls` true.
   */
  controlPlane?: ControlPlaneOptions;
  /** Longest one API request may take, and the retry budget of a delete or list, in ms. Default 30 000. */
  requestTimeout?: number;
}

const name = v.pipe(v.string(), v.minLength(1));
const stringMap = v.record(v.string(), v.string());
const objects = v.array(v.record(v.string(), v.unknown()));

const schema = v.strictObject({
  namespace: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "Expected a namespace name (lowercase letters, digits and dashes)"))),
  kubeconfig: v.optional(name),
  context: v.optional(name),
  parentPod: v.optional(v.union([v.literal(false), v.strictObject({ name: v.optional(name), container: v.optional(name) })]), {}),
  image: v.optional(name),
  imagePullPolicy: v.optional(v.picklist(["Always", "IfNotPresent", "Never"])),
  imagePullSecrets: v.optional(v.array(name)),
  command: v.optional(v.pipe(v.array(v.string()), v.minLength(1))),
  resources: v.optional(
    v.strictObject({
      requests: v.optional(v.record(v.string(), v.union([v.string(), v.number()]))),
      limits: v.optional(v.record(v.string(), v.union([v.string(), v.number()]))),
    }),
  ),
  nodeSelector: v.optional(stringMap),
  tolerations: v.optional(objects),
  affinity: v.optional(v.record(v.string(), v.unknown())),
  serviceAccountName: v.optional(name),
  labels: v.optional(stringMap, {}),
  annotations: v.optional(stringMap, {}),
  env: v.optional(stringMap, {}),
  envFrom: v.optional(objects, []),
  volumes: v.optional(objects, []),
  volumeMounts: v.optional(objects, []),
  podTemplate: v.optional(v.custom<(pod: KubernetesObject) => KubernetesObject>((value) => typeof value === "function", "Expected a function")),
  ownerReferences: v.optional(v.boolean(), true),
  terminationGracePeriodSeconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 10),
  unschedulableGrace: v.optional(milliseconds(), 30_000),
  controlPlane: controlPlaneSchema({ host: "0.0.0.0", port: 3526 }),
  requestTimeout: v.optional(v.pipe(milliseconds(), v.minValue(1)), 30_000),
});

/**
 * Options after validation and defaults from the environment (the namespace may still come from the credentials).
 * @internal
 */
export type ResolvedKubernetesOptions = v.InferOutput<typeof schema> & {
  /** The parent pod's name, when known. */
  parentPodName: string | undefined;
};

/**
 * Validates `input` and fills the defaults the environment gives (POD_NAME, POD_NAMESPACE, POD_IP).
 * @internal
 */
export function resolveKubernetesOptions(input: KubernetesBackendOptions, env: NodeJS.ProcessEnv = process.env): ResolvedKubernetesOptions {
  const parsed = parseOptions("KubernetesBackend", schema, input ?? {});
  const podIp = env.POD_IP || undefined;
  return {
    ...parsed,
    namespace: parsed.namespace ?? (env.POD_NAMESPACE || undefined),
    parentPodName: parsed.parentPod === false ? undefined : (parsed.parentPod.name ?? (env.POD_NAME || undefined)),
    controlPlane: {
      ...parsed.controlPlane,
      // The pod IP, when known, rather than every interface: the control plane is reachable only where runners dial it.
      host: input?.controlPlane?.host ?? podIp ?? parsed.controlPlane.host,
      advertisedHost: parsed.controlPlane.advertisedHost ?? podIp,
    },
  };
}
