/**
 * How KubernetesBackend reaches and authenticates to the API server: the
 * pod's service account when the parent runs in the cluster (the token file,
 * the CA and the namespace file Kubernetes mounts, KUBERNETES_SERVICE_HOST),
 * or a kubeconfig for a parent outside it (a laptop, CI). Of a kubeconfig's
 * ways to authenticate it reads bearer tokens (inline or file), client
 * certificates (inline or file), and exec plugins (EKS, GKE, AKS and OIDC
 * helpers print an ExecCredential); legacy auth-provider entries are refused
 * with a message naming their exec replacement.
 *
 * `yaml` is imported only when a kubeconfig is read: a parent in the cluster,
 * and every runner, never load it.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { BackendError, ERROR_CODES } from "../../errors.js";

/** Where a pod's service account is mounted. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Everything a request to the API server needs. */
export interface ClusterCredentials {
  /** API server URL, e.g. https://10.0.0.1:443. */
  server: string;
  /** PEM of the CA that signed the server's certificate; undefined: the system's CAs. */
  ca: string | undefined;
  /** kubeconfig's insecure-skip-tls-verify. */
  insecureSkipTlsVerify: boolean;
  /** kubeconfig's tls-server-name: the name the server's certificate is checked against. */
  tlsServerName: string | undefined;
  /** Client certificate and key (PEM), when the user authenticates with one. */
  clientCertificate: { cert: string; key: string } | undefined;
  /** The bearer token of the next request, if any (read fresh: service-account tokens rotate). */
  token(): Promise<string | undefined>;
  /** Namespace the credentials name (the service account's, or the kubeconfig context's). */
  namespace: string | undefined;
  /** Where the credentials came from, for messages: never the token itself. */
  source: string;
}

export interface CredentialOptions {
  /** Path of a kubeconfig; when unset, in-cluster credentials are tried first, then $KUBECONFIG, then ~/.kube/config. */
  kubeconfig?: string | undefined;
  /** Context of the kubeconfig. Default: its current-context. */
  context?: string | undefined;
}

/** Resolves credentials as kubectl would, in-cluster first unless a kubeconfig is named. */
export async function loadCredentials(options: CredentialOptions, env: NodeJS.ProcessEnv = process.env, serviceAccountDir = SERVICE_ACCOUNT_DIR): Promise<ClusterCredentials> {
  if (options.kubeconfig) return fromKubeconfig(resolve(options.kubeconfig), options.context);
  if (env.KUBERNETES_SERVICE_HOST && existsSync(join(serviceAccountDir, "token"))) return inCluster(env, serviceAccountDir);
  const fromEnv = env.KUBECONFIG?.split(":").find((path) => path && existsSync(path));
  if (fromEnv) return fromKubeconfig(resolve(fromEnv), options.context);
  const home = join(env.HOME ?? homedir(), ".kube", "config");
  if (existsSync(home)) return fromKubeconfig(home, options.context);
  throw configError(
    "no credentials for the Kubernetes API: not in a pod (KUBERNETES_SERVICE_HOST and a service-account token), and no kubeconfig ($KUBECONFIG, ~/.kube/config or the \"kubeconfig\" option)",
  );
}

/** The pod's own service account: the token file is re-read every minute, as client-go does, because the kubelet rotates it. */
async function inCluster(env: NodeJS.ProcessEnv, dir: string): Promise<ClusterCredentials> {
  const host = env.KUBERNETES_SERVICE_HOST!;
  const port = env.KUBERNETES_SERVICE_PORT || "443";
  const caPath = join(dir, "ca.crt");
  const ca = existsSync(caPath) ? await readFile(caPath, "utf8") : undefined;
  const namespacePath = join(dir, "namespace");
  const namespace = existsSync(namespacePath) ? (await readFile(namespacePath, "utf8")).trim() : undefined;
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    ca,
    insecureSkipTlsVerify: false,
    tlsServerName: undefined,
    clientCertificate: undefined,
    token: cachedFileToken(join(dir, "token")),
    namespace: namespace || undefined,
    source: `the pod's service account (${dir})`,
  };
}

const TOKEN_FILE_REFRESH = 60_000;

function cachedFileToken(path: string): () => Promise<string> {
  let cached: { token: string; readAt: number } | undefined;
  return async () => {
    if (!cached || Date.now() - cached.readAt > TOKEN_FILE_REFRESH) cached = { token: (await readFile(path, "utf8")).trim(), readAt: Date.now() };
    return cached.token;
  };
}

type Entry<T> = { name?: unknown } & T;
interface KubeconfigFile {
  "current-context"?: unknown;
  contexts?: Entry<{ context?: { cluster?: unknown; user?: unknown; namespace?: unknown } }>[];
  clusters?: Entry<{ cluster?: Record<string, unknown> }>[];
  users?: Entry<{ user?: Record<string, unknown> }>[];
}

async function fromKubeconfig(path: string, contextName: string | undefined): Promise<ClusterCredentials> {
  const { parse } = await import("yaml");
  let config: KubeconfigFile;
  try {
    config = (parse(await readFile(path, "utf8")) ?? {}) as KubeconfigFile;
  } catch (error) {
    throw configError(`could not read the kubeconfig ${path}: ${(error as Error).message}`, error);
  }
  const wanted = contextName ?? (typeof config["current-context"] === "string" ? config["current-context"] : undefined);
  if (!wanted) throw configError(`the kubeconfig ${path} has no current-context: pass the "context" option`);
  const context = named(config.contexts, wanted)?.context;
  if (!context) throw configError(`the kubeconfig ${path} has no context "${wanted}"`);
  const cluster = named(config.clusters, String(context.cluster))?.cluster;
  if (!cluster || typeof cluster.server !== "string") throw configError(`the kubeconfig ${path} has no cluster "${String(context.cluster)}" with a server`);
  const user = (context.user === undefined ? {} : named(config.users, String(context.user))?.user) ?? {};
  const base = dirname(path);
  const source = `the kubeconfig ${path} (context "${wanted}")`;
  if (user["auth-provider"]) {
    throw configError(
      `${source} authenticates with an auth-provider entry, which current clients no longer support: switch it to the provider's exec plugin (gke-gcloud-auth-plugin, kubelogin, aws eks get-token)`,
    );
  }
  const cert = await inlineOrFile(user, "client-certificate", base);
  const key = await inlineOrFile(user, "client-key", base);
  return {
    server: cluster.server,
    ca: await inlineOrFile(cluster, "certificate-authority", base),
    insecureSkipTlsVerify: cluster["insecure-skip-tls-verify"] === true,
    tlsServerName: typeof cluster["tls-server-name"] === "string" ? cluster["tls-server-name"] : undefined,
    clientCertificate: cert && key ? { cert, key } : undefined,
    token: userToken(user, base, source),
    namespace: typeof context.namespace === "string" ? context.namespace : undefined,
    source,
  };
}

function named<T extends { name?: unknown }>(entries: T[] | undefined, name: string): T | undefined {
  return Array.isArray(entries) ? entries.find((entry) => entry?.name === name) : undefined;
}

/** A kubeconfig field given inline as base64 (`<field>-data`) or as a file path (`<field>`, relative to the kubeconfig). */
async function inlineOrFile(section: Record<string, unknown>, field: string, base: string): Promise<string | undefined> {
  const inline = section[`${field}-data`];
  if (typeof inline === "string") return Buffer.from(inline, "base64").toString("utf8");
  const path = section[field];
  if (typeof path === "string") return readFile(isAbsolute(path) ? path : join(base, path), "utf8");
  return undefined;
}

function userToken(user: Record<string, unknown>, base: string, source: string): () => Promise<string | undefined> {
  if (typeof user.token === "string") {
    const token = user.token;
    return async () => token;
  }
  if (typeof user.tokenFile === "string") return cachedFileToken(isAbsolute(user.tokenFile) ? user.tokenFile : join(base, user.tokenFile));
  if (user.exec && typeof user.exec === "object") return execToken(user.exec as Record<string, unknown>, source);
  return async () => undefined;
}

/**
 * A client-go exec credential plugin: run the command, read the token from
 * the ExecCredential it prints, reuse it until shortly before it expires.
 */
function execToken(exec: Record<string, unknown>, source: string): () => Promise<string> {
  const command = exec.command;
  if (typeof command !== "string") throw configError(`${source} has an exec user without a command`);
  const args = Array.isArray(exec.args) ? exec.args.map(String) : [];
  const extraEnv = Object.fromEntries(
    (Array.isArray(exec.env) ? exec.env : [])
      .filter((entry): entry is { name: string; value: string } => typeof entry?.name === "string" && typeof entry?.value === "string")
      .map((entry) => [entry.name, entry.value]),
  );
  let cached: { token: string; expiresAt: number } | undefined;
  return async () => {
    if (cached && Date.now() < cached.expiresAt) return cached.token;
    const output = await new Promise<string>((resolveOutput, reject) => {
      execFile(command, args, { env: { ...process.env, ...extraEnv }, timeout: 30_000, maxBuffer: 1024 * 1024 }, (error, stdout, stderr) => {
        if (error) reject(configError(`${source}: the credential plugin "${command}" failed: ${(stderr || error.message).trim().slice(0, 500)}`, error));
        else resolveOutput(stdout);
      });
    });
    let status: { token?: unknown; expirationTimestamp?: unknown } | undefined;
    try {
      status = (JSON.parse(output) as { status?: typeof status }).status;
    } catch (error) {
      throw configError(`${source}: the credential plugin "${command}" did not print an ExecCredential`, error);
    }
    if (typeof status?.token !== "string") throw configError(`${source}: the credential plugin "${command}" printed no token (client certificates from plugins are not supported)`);
    const expiry = typeof status.expirationTimestamp === "string" ? Date.parse(status.expirationTimestamp) : Number.NaN;
    // A minute's margin so a request never leaves with a token about to expire.
    cached = { token: status.token, expiresAt: Number.isNaN(expiry) ? Date.now() + 5 * 60_000 : expiry - 60_000 };
    return cached.token;
  };
}

function configError(message: string, cause?: unknown): BackendError {
  return new BackendError(`KubernetesBackend: ${message}`, { retryable: false, code: ERROR_CODES.FLAME_KUBERNETES_INVALID_CONFIGURATION, cause });
}
