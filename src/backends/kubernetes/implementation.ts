/**
 * What KubernetesBackend does once it is used: finds the credentials and the
 * parent pod, creates each runner's Secret and pod, follows them through one
 * watch, deletes and lists them. Loaded by the shell (../kubernetes.ts) on
 * first use, so a runner, which only constructs its backend, never evaluates
 * it, the API client or the watch.
 */
import { BackendError, ERROR_CODES } from "../../errors.js";
import type { ControlPlaneAddress } from "../../control-plane/address.js";
import { retry } from "../../retry.js";
import type { ListedRunner, ProvisionedRunner, ProvisionRequest } from "../backend.js";
import { KubernetesApiClient, retryVerdict, type RbacAction } from "./api.js";
import { KubernetesApiError } from "./api-error.js";
import { loadCredentials } from "./credentials.js";
import { LABELS, MANAGED_BY, ownedBy, parentSelector, podName, podOwner, runnerPod, runnerSecret, secretName, labelValue, type ParentPod } from "./manifests.js";
import type { ResolvedKubernetesOptions } from "./options.js";
import { podVerdict, type PodObject } from "./pod-status.js";
import { PodWatch } from "./pod-watch.js";
import { KUBERNETES_RBAC } from "./rbac.js";

/** What the backend needs of the cluster, found once on first use. */
interface Cluster {
  api: KubernetesApiClient;
  namespace: string;
  parent: ParentPod | undefined;
}

/** KubernetesBackend's async methods, on options its shell resolved. */
export class KubernetesBackendImplementation {
  private cluster: Promise<Cluster> | undefined;
  /** One watch per parent id (a process has one; tests may fake several). */
  private readonly watches = new Map<string, PodWatch>();
  /** Per runner, stops following its pod. */
  private readonly following = new Map<string, () => void>();

  /** `controlPlane` is the shell's, which checks the parent can tell runners where it is. */
  constructor(
    private readonly options: ResolvedKubernetesOptions,
    private readonly controlPlane: () => ControlPlaneAddress,
  ) {}

  /**
   * Called by `pool.start()`: finds the credentials and the parent pod, and
   * asks the API server (SelfSubjectAccessReview) whether the parent may make
   * every request the backend makes, so a missing RBAC rule fails the start
   * with the verbs it lacks instead of the first boot.
   */
  async checkPermissions(): Promise<void> {
    const cluster = await this.connect();
    this.controlPlane();
    this.image(cluster);
    const denied = await deniedActions(cluster);
    if (denied.length > 0) {
      throw new BackendError(
        `KubernetesBackend: the parent may not ${denied.map(({ verb, resource }) => `${verb} ${resource}`).join(", ")} in namespace "${cluster.namespace}" ` +
          `(${cluster.api.credentials.source}): grant them in its Role (infra/kubernetes/rbac.yaml)`,
        { retryable: false, code: ERROR_CODES.FLAME_KUBERNETES_UNAUTHORIZED },
      );
    }
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedRunner> {
    const cluster = await this.connect();
    const image = this.image(cluster);
    const name = podName(request.runnerId);
    // Follow the pod before it exists, so that no change to it is missed.
    const pod = this.follow(cluster, request, name);
    try {
      await createObject(cluster, "secrets", runnerSecret(request, cluster.parent, this.options), request);
      const created = await createObject(cluster, "pods", runnerPod(request, cluster.parent, { ...this.options, image }), request);
      void this.secretOwnedByPod(cluster, request, created);
      const podIP = await abortable(pod.placed, request.signal);
      request.log.debug({ pod: name, podIP }, `runner pod ${name} is on a node, at ${podIP}`);
      const address = this.options.controlPlane.checkRunnerAddress ? podIP : undefined;
      return { runnerId: request.runnerId, providerId: name, exited: pod.exited, failed: pod.failed, ...(address ? { address } : {}) };
    } catch (error) {
      this.unfollow(request.runnerId);
      await this.remove(cluster, request.runnerId).catch((cleanupError: unknown) =>
        request.log.error({ err: cleanupError }, `could not delete runner pod ${name} or its Secret after its boot failed`),
      );
      throw error;
    }
  }

  /** Deletes the runner's pod and Secret; either already gone (404) counts as deleted. */
  async terminate(runner: ProvisionedRunner): Promise<void> {
    this.unfollow(runner.runnerId);
    await this.remove(await this.connect(), runner.runnerId);
  }

  /** Runner pods of this namespace (optionally of one pool), and Secrets whose pod is gone, found by their labels. */
  async list(filter: { pool?: string } = {}): Promise<ListedRunner[]> {
    const cluster = await this.connect();
    const selector = `${LABELS.managedBy}=${MANAGED_BY}${filter.pool === undefined ? "" : `,${LABELS.pool}=${labelValue(filter.pool)}`}`;
    const [pods, secrets] = await Promise.all(
      (["pods", "secrets"] as const).map((resource) =>
        cluster.api.request("GET", `${namespacePath(cluster)}/${resource}`, {
          query: { labelSelector: selector },
          action: `list runner ${resource}`,
          rbac: { verb: "list", resource },
          namespace: cluster.namespace,
          deadline: Date.now() + this.options.requestTimeout,
        }),
      ),
    );
    const listed = new Map<string, ListedRunner>();
    const add = (object: PodObject, state: string) => {
      const annotations = object.metadata?.annotations ?? {};
      const runnerId = annotations[LABELS.runner];
      const pool = annotations[LABELS.pool];
      if (!runnerId || pool === undefined || listed.has(runnerId)) return;
      if (filter.pool !== undefined && pool !== filter.pool) return;
      listed.set(runnerId, { runnerId, providerId: podName(runnerId), pool, parentId: annotations[LABELS.parent] ?? "", state });
    };
    for (const pod of items(pods!.body)) if (!pod.metadata?.deletionTimestamp) add(pod, pod.status?.phase?.toLowerCase() ?? "unknown");
    for (const secret of items(secrets!.body)) add(secret, "secret-only");
    return [...listed.values()];
  }

  private image(cluster: Cluster): string {
    const image = this.options.image ?? cluster.parent?.image;
    if (!image) {
      throw configError(
        'KubernetesBackend needs an image for runner pods: set the "image" option, or run the parent in a pod and set POD_NAME (downward API) so runners use its image',
      );
    }
    return image;
  }

  /** Credentials, namespace and parent pod, found once; a failure is not cached, so the next use tries again. */
  private connect(): Promise<Cluster> {
    this.cluster ??= this.discover().catch((error: unknown) => {
      this.cluster = undefined;
      throw error;
    });
    return this.cluster;
  }

  private async discover(): Promise<Cluster> {
    const credentials = await loadCredentials({ kubeconfig: this.options.kubeconfig, context: this.options.context });
    const namespace = this.options.namespace ?? credentials.namespace ?? "default";
    const api = new KubernetesApiClient(credentials, this.options.requestTimeout);
    const cluster: Cluster = { api, namespace, parent: undefined };
    const parentName = this.options.parentPodName;
    if (parentName) cluster.parent = await readParentPod(cluster, parentName, this.options);
    return cluster;
  }

  private follow(cluster: Cluster, request: ProvisionRequest, name: string): FollowedPod {
    let watch = this.watches.get(request.parentId);
    if (!watch) {
      watch = new PodWatch(cluster.api, cluster.namespace, parentSelector(request.parentId), request.log);
      this.watches.set(request.parentId, watch);
    }
    const followed = followPod(name, this.options.unschedulableGrace);
    const stop = watch.follow(name, followed.onChange);
    this.following.set(request.runnerId, () => {
      stop();
      followed.stop();
    });
    return followed;
  }

  private unfollow(runnerId: string): void {
    this.following.get(runnerId)?.();
    this.following.delete(runnerId);
  }

  /**
   * Makes the runner's pod an owner of its Secret, so deleting the pod (by
   * kubectl, or an eviction's cleanup) deletes the Secret too. Off the boot's
   * path: if it fails, `terminate` and the parent pod's ownership still remove it.
   */
  private async secretOwnedByPod(cluster: Cluster, request: ProvisionRequest, pod: PodObject): Promise<void> {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    const owners = [...(ownedBy(cluster.parent, this.options) ?? []), podOwner(podName(request.runnerId), uid)];
    try {
      await cluster.api.request("PATCH", `${namespacePath(cluster)}/secrets/${secretName(request.runnerId)}`, {
        body: { metadata: { ownerReferences: owners } },
        contentType: "application/merge-patch+json",
        action: `make runner pod ${podName(request.runnerId)} the owner of its Secret`,
        rbac: { verb: "patch", resource: "secrets" },
        namespace: cluster.namespace,
        deadline: Date.now() + this.options.requestTimeout,
      });
    } catch (error) {
      request.log.warn({ err: error }, `could not make runner pod ${podName(request.runnerId)} the owner of its Secret; it is deleted with the runner instead`);
    }
  }

  private async remove(cluster: Cluster, runnerId: string): Promise<void> {
    const gone = new Set([404]);
    const deadline = Date.now() + this.options.requestTimeout;
    await Promise.all([
      cluster.api.request("DELETE", `${namespacePath(cluster)}/pods/${podName(runnerId)}`, {
        body: { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background" },
        action: `delete runner pod ${podName(runnerId)}`,
        rbac: { verb: "delete", resource: "pods" },
        namespace: cluster.namespace,
        deadline,
        acceptStatuses: gone,
      }),
      cluster.api.request("DELETE", `${namespacePath(cluster)}/secrets/${secretName(runnerId)}`, {
        action: `delete runner Secret ${secretName(runnerId)}`,
        rbac: { verb: "delete", resource: "secrets" },
        namespace: cluster.namespace,
        deadline,
        acceptStatuses: gone,
      }),
    ]);
  }
}

/** A followed pod: when it is placed (with its IP), when it failed in a way Kubernetes names, and when it ended (with why). */
interface FollowedPod {
  placed: Promise<string>;
  failed: Promise<never>;
  exited: Promise<string>;
  onChange(pod: PodObject | undefined): void;
  stop(): void;
}

/** Turns the watch's pod states into a boot's two answers, failing an unschedulable pod after `grace` ms. */
function followPod(name: string, grace: number): FollowedPod {
  let resolvePlaced!: (podIP: string) => void;
  let rejectPlaced!: (error: BackendError) => void;
  const placed = new Promise<string>((resolve, reject) => ((resolvePlaced = resolve), (rejectPlaced = reject)));
  placed.catch(() => undefined);
  let rejectFailed!: (error: BackendError) => void;
  const failed = new Promise<never>((_, reject) => (rejectFailed = reject));
  failed.catch(() => undefined);
  let resolveExited!: (detail: string) => void;
  const exited = new Promise<string>((resolve) => (resolveExited = resolve));
  let unschedulable: NodeJS.Timeout | undefined;
  const stopGrace = () => {
    clearTimeout(unschedulable);
    unschedulable = undefined;
  };
  return {
    placed,
    failed,
    exited,
    stop: stopGrace,
    onChange(pod) {
      if (pod === undefined) {
        stopGrace();
        rejectPlaced(new BackendError(`runner pod ${name} was deleted before it started`, { retryable: true, code: ERROR_CODES.FLAME_KUBERNETES_FAILED }));
        resolveExited(`runner pod ${name} was deleted`);
        return;
      }
      const verdict = podVerdict(pod);
      if (verdict.kind !== "unschedulable") stopGrace();
      if (verdict.kind === "placed") resolvePlaced(verdict.podIP);
      else if (verdict.kind === "failed") {
        const failure = new BackendError(verdict.message, { retryable: verdict.retryable, code: verdict.code });
        rejectPlaced(failure);
        rejectFailed(failure);
        resolveExited(verdict.message);
      } else if (verdict.kind === "unschedulable" && !unschedulable) {
        unschedulable = setTimeout(
          () => rejectPlaced(new BackendError(`${verdict.message} (for ${grace} ms, the unschedulableGrace)`, { retryable: true, code: ERROR_CODES.FLAME_KUBERNETES_CAPACITY })),
          grace,
        );
      }
    },
  };
}

/**
 * Creates an object under the boot's deadline, retrying throttling, server
 * errors and lost answers. Names are the runner's own, so AlreadyExists
 * after a lost answer is our earlier attempt: it is read back and used if it
 * belongs to this runner. The request in flight is never cut off by the
 * boot's signal (an object could be made that nobody knows of); the caller
 * deletes by name whatever was made.
 */
async function createObject(cluster: Cluster, resource: "pods" | "secrets", body: Record<string, unknown>, request: ProvisionRequest): Promise<PodObject> {
  const name = (body.metadata as { name: string }).name;
  const action = `create ${resource === "pods" ? "pod" : "Secret"} ${name} for runner ${request.runnerId}`;
  const options = { action, rbac: { verb: "create", resource } as RbacAction, namespace: cluster.namespace };
  return retry(
    async () => {
      const response = await cluster.api.send("POST", `${namespacePath(cluster)}/${resource}`, action, {
        body,
        timeout: Math.min(cluster.api.requestTimeout, Math.max(1_000, request.deadline - Date.now())),
      });
      if (response.status >= 200 && response.status < 300) return response.body as PodObject;
      if (response.status === 409) {
        const existing = await cluster.api.send("GET", `${namespacePath(cluster)}/${resource}/${name}`, action);
        const object = existing.body as PodObject;
        if (existing.status === 200 && object?.metadata?.annotations?.[LABELS.runner] === request.runnerId) return object;
        // Someone else's object by that name will not go away by retrying; a conflict over nothing may.
        if (existing.status === 200) {
          throw new KubernetesApiError(`could not ${action}: a ${resource === "pods" ? "pod" : "Secret"} named ${name} exists and is not this runner's`, {
            retryable: false,
            status: 409,
            reason: "AlreadyExists",
            code: ERROR_CODES.FLAME_KUBERNETES_INVALID_CONFIGURATION,
          });
        }
      }
      throw cluster.api.errorFor(response, options);
    },
    {
      deadline: request.deadline,
      signal: request.signal,
      shouldRetry: retryVerdict,
    },
  );
}

async function readParentPod(cluster: Cluster, name: string, options: ResolvedKubernetesOptions): Promise<ParentPod> {
  const path = `${namespacePath(cluster)}/pods/${encodeURIComponent(name)}`;
  const action = `read the parent pod ${name}`;
  const response = await cluster.api.request("GET", path, {
    action,
    rbac: { verb: "get", resource: "pods" },
    namespace: cluster.namespace,
    deadline: Date.now() + options.requestTimeout,
    acceptStatuses: new Set([404]),
  });
  if (response.status === 404) {
    throw configError(
      `KubernetesBackend: the parent pod "${name}" (POD_NAME) is not in namespace "${cluster.namespace}": set POD_NAME and POD_NAMESPACE through the downward API, or parentPod: false with an "image"`,
    );
  }
  const pod = response.body as PodObject;
  const containers = pod.spec?.containers ?? [];
  const wanted = options.parentPod === false ? undefined : options.parentPod.container;
  const container = wanted ? containers.find((candidate) => candidate.name === wanted) : containers[0];
  if (!container) throw configError(`KubernetesBackend: the parent pod "${name}" has no container${wanted ? ` named "${wanted}"` : ""}`);
  if (!pod.metadata?.uid) throw configError(`KubernetesBackend: the parent pod "${name}" came back without a uid`);
  return { name, uid: pod.metadata.uid, image: container.image, imagePullPolicy: container.imagePullPolicy, imagePullSecrets: pod.spec?.imagePullSecrets };
}

/** The backend's requests the API server says the parent may not make (SelfSubjectAccessReview). */
async function deniedActions(cluster: Cluster): Promise<RbacAction[]> {
  const answers = await Promise.all(
    KUBERNETES_RBAC.map(async (action) => {
      const response = await cluster.api.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        body: {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SelfSubjectAccessReview",
          spec: { resourceAttributes: { namespace: cluster.namespace, verb: action.verb, resource: action.resource, group: action.group ?? "" } },
        },
        action: `ask whether the parent may ${action.verb} ${action.resource}`,
        rbac: { verb: "create", resource: "selfsubjectaccessreviews", group: "authorization.k8s.io" },
        namespace: cluster.namespace,
        deadline: Date.now() + 10_000,
      });
      return (response.body as { status?: { allowed?: unknown } })?.status?.allowed === true ? undefined : action;
    }),
  );
  return answers.filter((action): action is RbacAction => action !== undefined);
}

function namespacePath(cluster: Cluster): string {
  return `/api/v1/namespaces/${encodeURIComponent(cluster.namespace)}`;
}

function items(body: unknown): PodObject[] {
  const list = (body as { items?: unknown })?.items;
  return Array.isArray(list) ? (list as PodObject[]) : [];
}

/** `promise`, or the signal's reason as soon as it aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function configError(message: string): BackendError {
  return new BackendError(message, { retryable: false, code: ERROR_CODES.FLAME_KUBERNETES_INVALID_CONFIGURATION });
}
