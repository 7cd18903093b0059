/**
 * What a client needs to reach the emulator as it would a cluster: a
 * kubeconfig file (what kubectl and an out-of-cluster client read), or the
 * service-account directory and environment a process in a pod sees
 * (in-cluster configuration).
 */
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { stringify } from "yaml";

/** What the files say about the emulator. */
export interface ClusterEndpoint {
  url: string;
  token: string;
  /** PEM; undefined when the emulator serves plain HTTP. */
  caCertificate: string | undefined;
  namespace: string;
}

/** The cluster, user and context names written into kubeconfigs. */
export const KUBECONFIG_NAMES = { cluster: "flame-emulated", user: "flame-emulated", context: "flame-emulated" };

/** Writes a kubeconfig for `endpoint` at `path` (default: a new temporary directory's `kubeconfig`), returns its path. */
export async function writeKubeconfigFile(endpoint: ClusterEndpoint, path?: string): Promise<string> {
  const target = path ?? join(await mkdtemp(join(tmpdir(), "flame-k8s-emulator-")), "kubeconfig");
  await mkdir(dirname(target), { recursive: true });
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: KUBECONFIG_NAMES.cluster,
        cluster: {
          server: endpoint.url,
          ...(endpoint.caCertificate ? { "certificate-authority-data": Buffer.from(endpoint.caCertificate).toString("base64") } : {}),
        },
      },
    ],
    users: [{ name: KUBECONFIG_NAMES.user, user: { token: endpoint.token } }],
    contexts: [{ name: KUBECONFIG_NAMES.context, context: { cluster: KUBECONFIG_NAMES.cluster, user: KUBECONFIG_NAMES.user, namespace: endpoint.namespace } }],
    "current-context": KUBECONFIG_NAMES.context,
    preferences: {},
  };
  // Owner-only: it holds the token.
  await writeFile(target, stringify(config), { mode: 0o600 });
  return target;
}

/** A pod's view of its service account and API server. */
export interface InClusterConfiguration {
  /** Holds `token`, `ca.crt` and `namespace`, as /var/run/secrets/kubernetes.io/serviceaccount does. */
  directory: string;
  /** KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, as a pod's environment has them. */
  env: Record<string, string>;
}

/** Writes a service-account directory for `endpoint` (default: a new temporary one). */
export async function writeServiceAccountDirectory(endpoint: ClusterEndpoint, directory?: string): Promise<InClusterConfiguration> {
  const target = directory ?? (await mkdtemp(join(tmpdir(), "flame-k8s-serviceaccount-")));
  await mkdir(target, { recursive: true });
  await writeFile(join(target, "token"), endpoint.token, { mode: 0o600 });
  await writeFile(join(target, "namespace"), endpoint.namespace);
  await writeFile(join(target, "ca.crt"), endpoint.caCertificate ?? "");
  const url = new URL(endpoint.url);
  return {
    directory: target,
    env: { KUBERNETES_SERVICE_HOST: url.hostname, KUBERNETES_SERVICE_PORT: url.port || (url.protocol === "https:" ? "443" : "80") },
  };
}
