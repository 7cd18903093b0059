/**
 * The API requests KubernetesBackend makes, as RBAC verbs and resources: its
 * own module because `doctor` and the RBAC test read it without loading the
 * backend's implementation, which checks the same list at `pool.start()`.
 */
import type { RbacAction } from "./api.js";

/** Every API request the backend makes, in RBAC's words: what infra/kubernetes/rbac.yaml grants and `doctor` checks. */
export const KUBERNETES_RBAC: readonly RbacAction[] = [
  { verb: "get", resource: "pods" },
  { verb: "list", resource: "pods" },
  { verb: "watch", resource: "pods" },
  { verb: "create", resource: "pods" },
  { verb: "delete", resource: "pods" },
  { verb: "list", resource: "secrets" },
  { verb: "create", resource: "secrets" },
  { verb: "patch", resource: "secrets" },
  { verb: "delete", resource: "secrets" },
];
