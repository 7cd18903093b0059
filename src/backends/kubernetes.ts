/**
 * KubernetesBackend: each runner is a pod booted from the parent's own image
 * (read from the parent pod, named by the downward API's POD_NAME), running
 * the runner agent and dialing back to the parent's pod IP over the pinned
 * TLS channel. Its one-time token travels in a Secret of its own; the pod
 * never restarts, mounts no API credentials, and is owned by the parent pod,
 * so a parent that is deleted or crashes takes its runners with it.
 * Readiness and failures come from one watch (pod-watch.ts), never from
 * polling. See docs/kubernetes.md.
 *
 * This file is a shell: every runner evaluates it on its cold start (the app
 * module imports flame-ts and builds its pool and backend there too), so it
 * holds only what construction and `controlPlane()` need. The API client, the
 * watch, the manifests and the credentials are in kubernetes/implementation.ts,
 * loaded on first use of an async method.
 */
import { BackendError, ERROR_CODES } from "../errors.js";
import { advertisedAddress, type ControlPlaneAddress } from "../control-plane/address.js";
import { DeferredBackend, type BackendImplementation } from "./deferred-backend.js";
import { resolveKubernetesOptions, type KubernetesBackendOptions, type ResolvedKubernetesOptions } from "./kubernetes/options.js";

export type { KubernetesBackendOptions, KubernetesObject, KubernetesResources } from "./kubernetes/options.js";
export { KubernetesApiError } from "./kubernetes/api-error.js";
export { KUBERNETES_RBAC } from "./kubernetes/rbac.js";

/**
 * A Backend whose runners are Kubernetes pods. Options: see
 * KubernetesBackendOptions and docs/kubernetes.md. `checkPermissions` finds
 * the credentials and the parent pod and asks the API server
 * (SelfSubjectAccessReview) whether the parent may make every request the
 * backend makes, so a missing RBAC rule fails `pool.start()` instead of the
 * first boot; `terminate` deletes the pod and its Secret; `list` finds runner
 * pods, and Secrets whose pod is gone, by their labels.
 */
export class KubernetesBackend extends DeferredBackend {
  readonly name = "kubernetes";
  /** Pods may wait for a node and pull an image: more than the 30 s the pool gives local runners. */
  readonly defaultBootTimeout = 120_000;
  private readonly options: ResolvedKubernetesOptions;

  /**
   * Options are validated now; credentials and the parent pod are looked up
   * on first use, because the pool an app builds on a runner constructs its
   * backend too and never uses it.
   */
  constructor(options: KubernetesBackendOptions = {}) {
    super();
    this.options = resolveKubernetesOptions(options);
  }

  /** The cluster side, made with these options. */
  protected async loadImplementation(): Promise<BackendImplementation> {
    const { KubernetesBackendImplementation } = await import("./kubernetes/implementation.js");
    return new KubernetesBackendImplementation(this.options, () => this.controlPlane());
  }

  /** The parent listens on its pod IP, port 3526, and runners dial it there over TLS, unless configured otherwise. */
  controlPlane(): ControlPlaneAddress {
    const { host, port, advertisedHost, tls } = this.options.controlPlane;
    if (!advertisedHost) {
      throw new BackendError(
        'KubernetesBackend cannot tell runners where to reach this parent: POD_IP is not set (give the parent\'s container `env: [{ name: POD_IP, valueFrom: { fieldRef: { fieldPath: status.podIP } } }]`) and the "controlPlane.advertisedHost" option is not given',
        { retryable: false, code: ERROR_CODES.FLAME_KUBERNETES_INVALID_CONFIGURATION },
      );
    }
    return advertisedAddress({ host, port, tls }, advertisedHost);
  }
}
