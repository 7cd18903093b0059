/**
 * A Kubernetes API emulator for tests and local development: an HTTPS (or
 * HTTP) server on 127.0.0.1 that speaks the part of core/v1 a FLAME backend
 * uses (pods, their logs and watches, Secrets, ConfigMaps, namespaces,
 * SelfSubjectAccessReviews) with the API server's semantics:
 * resourceVersions, watch replay and 410 Expired, graceful pod deletion,
 * owner-reference garbage collection, strict schema validation, RBAC. Each
 * pod is a real local process running its container's command and args
 * (the image is recorded, never pulled), and the pod's status follows it.
 * Faults (API errors, image pulls, unschedulable pods, crashes, evictions,
 * dropped watches, compaction) can be injected, and real kubectl works
 * against it through the kubeconfig it writes.
 */
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { dirname } from "node:path";
import * as v from "valibot";
import { milliseconds, parseOptions } from "../../validation.js";
import { KubernetesApi, type ApiFault, type RecordedRequest, type Violation } from "./api.js";
import { generateTlsIdentity } from "../../control-plane/certificate.js";
import { EmulatedCluster, type ExternalPodSpec } from "./cluster.js";
import { writeKubeconfigFile, writeServiceAccountDirectory, type InClusterConfiguration } from "./kubeconfig.js";
import type { PodFault } from "./pod.js";
import type { PolicyRule } from "./rbac.js";
import { SchemaValidator } from "./schema.js";
import type { KubernetesObject } from "./selectors.js";
import { WatchStreams } from "./watch.js";

// The types of the emulator's public API, from the modules that define them.
export type { ApiFault, RecordedRequest, Violation } from "./api.js";
export type { ExternalPodSpec } from "./cluster.js";
export type { InClusterConfiguration } from "./kubeconfig.js";
export type { PodFault } from "./pod.js";
export type { PolicyRule, RequestAttributes, Verb } from "./rbac.js";
export type { KubernetesObject } from "./selectors.js";

/** Options of startKubernetesEmulator. */
export interface KubernetesEmulatorOptions {
  /** The client's namespace: the kubeconfig's context and the service account's. Created with "default". Default "default". */
  namespace?: string;
  /** More namespaces that exist. Default none. */
  namespaces?: string[];
  /** Bearer token the emulator accepts. Default: a random one (see `token` on the result). */
  token?: string;
  /** Port on 127.0.0.1. Default 0 (any free port). */
  port?: number;
  /** Serve HTTPS with a self-signed certificate for 127.0.0.1 and localhost, made per emulator. Default true. */
  tls?: boolean;
  /** Validate written objects against the Kubernetes schema (needs the kubernetes-models package, version 4). Default true. */
  validate?: boolean;
  /** Who started it, so a missing-package error names the right switch ("cli": --no-validate). Default "api". */
  invokedFrom?: "api" | "cli";
  /** The Role bound to the token: requests it does not allow get 403. Default: everything allowed. */
  rules?: PolicyRule[];
  /** The token's service account, as Forbidden messages name it (system:serviceaccount:<namespace>:<this>). Default "default". */
  serviceAccount?: string;
  /** Working directory of pod processes (unless a container's workingDir exists). Default: this process's. */
  cwd?: string;
  /** What a container's environment starts from, as an image's would. Default: PATH, HOME, LANG and TMPDIR of this process. */
  baseEnv?: Record<string, string>;
  /** Ms between a pod's creation and its binding to the node. Default 0. */
  schedulingDelay?: number;
  /** Ms an image-pull fault shows ErrImagePull before ImagePullBackOff. Default 100. */
  imagePullBackOffAfter?: number;
  /** Changes remembered for watches; a watch from before them gets 410 Expired. Default 1000. */
  historyLimit?: number;
  /** Ms between BOOKMARK events on watches with allowWatchBookmarks. Default 60 000. */
  bookmarkInterval?: number;
  /** Copy pods' output to this process's stderr, prefixed with the pod's name. Default false. */
  echoOutput?: boolean;
}

/** A pod's process as the emulator ran it, kept after the pod is gone. */
export interface EmulatedPodProcess {
  namespace: string;
  name: string;
  uid: string;
  /** The environment the (last) process got. */
  env: Record<string, string>;
  pid: number | undefined;
  exitCode: number | undefined;
  restarts: number;
  /** Its stdout and stderr (the last MiB). */
  output: string;
  /** Whether the pod has left the store. */
  deleted: boolean;
}

/** A running emulator. */
export interface KubernetesEmulator {
  /** The API server's URL: https://127.0.0.1:<port> (http:// with tls: false). */
  readonly url: string;
  readonly token: string;
  /** The serving certificate (its own CA), PEM; undefined with tls: false. */
  readonly caCertificate: string | undefined;
  /** The client's namespace. */
  readonly namespace: string;
  /** The token's user, as the API server names it: system:serviceaccount:<namespace>:<serviceAccount>. */
  readonly user: string;
  /** Stored pods (of `namespace`, or all), as the API returns them. */
  pods(namespace?: string): KubernetesObject[];
  /** Stored Secrets (of `namespace`, or all). */
  secrets(namespace?: string): KubernetesObject[];
  /** Stored ConfigMaps (of `namespace`, or all). */
  configMaps(namespace?: string): KubernetesObject[];
  /** Every pod process the emulator started, deleted pods' included, oldest first. */
  podProcesses(): EmulatedPodProcess[];
  /** Every resource request served (discovery excluded), oldest first. */
  requests(): RecordedRequest[];
  /** Requests refused as malformed or invalid (400, 405, 413, 415, 422): a conforming client causes none. */
  violations(): Violation[];
  /** Forces `fault` on the next requests of `operation` ("createPod", "getPod", "listPods", "watchPods", "deletePod", "getPodLog", "createSecret", "patchSecret", ...). */
  failNext(operation: string, fault: ApiFault): void;
  /** Runs the next pods with these faults, one per pod, in order. */
  nextPods(...faults: PodFault[]): void;
  /** Drops every fault still queued by failNext and nextPods (for tests sharing one emulator). */
  clearFaults(): void;
  /** Evicts a running pod: its process is killed, phase Failed, reason Evicted. */
  evictPod(name: string, namespace?: string, message?: string): void;
  /** Registers a pod with no process (say, the parent's own), Running; returns it as stored. */
  addExternalPod(spec: ExternalPodSpec): KubernetesObject;
  /** Ends every open watch abruptly (sockets destroyed). */
  dropWatches(): void;
  /** How many watches are open. */
  openWatches(): number;
  /** Forgets the change history: a watch from any current or older resourceVersion gets 410 Expired. */
  compact(): void;
  /** Writes a kubeconfig for this emulator (default: in a new temporary directory, removed by close()); resolves with its path. */
  writeKubeconfig(path?: string): Promise<string>;
  /** Writes a service-account directory (token, ca.crt, namespace; default: a new temporary one, removed by close()) and returns it with a pod's KUBERNETES_SERVICE_* env. */
  writeServiceAccount(directory?: string): Promise<InClusterConfiguration>;
  /** Kills every pod process, waits for them to exit, and stops the server. */
  close(): Promise<void>;
}

const policyRule = v.strictObject({
  apiGroups: v.array(v.string()),
  resources: v.array(v.string()),
  verbs: v.array(v.string()),
  resourceNames: v.optional(v.array(v.string())),
});

const namespaceName = v.pipe(v.string(), v.regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "Expected a namespace name (a DNS label)"), v.maxLength(63));

const optionsSchema = v.strictObject({
  namespace: v.optional(namespaceName, "default"),
  namespaces: v.optional(v.array(namespaceName), []),
  token: v.optional(v.pipe(v.string(), v.minLength(1))),
  port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65_535)), 0),
  tls: v.optional(v.boolean(), true),
  validate: v.optional(v.boolean(), true),
  invokedFrom: v.optional(v.picklist(["api", "cli"]), "api"),
  rules: v.optional(v.array(policyRule)),
  serviceAccount: v.optional(v.pipe(v.string(), v.minLength(1)), "default"),
  cwd: v.optional(v.string()),
  baseEnv: v.optional(v.record(v.string(), v.string())),
  schedulingDelay: v.optional(milliseconds(), 0),
  imagePullBackOffAfter: v.optional(milliseconds(), 100),
  historyLimit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1)), 1000),
  bookmarkInterval: v.optional(v.pipe(milliseconds(), v.minValue(1)), 60_000),
  echoOutput: v.optional(v.boolean(), false),
});

/** Starts an emulator; resolves once it listens. */
export async function startKubernetesEmulator(input: KubernetesEmulatorOptions = {}): Promise<KubernetesEmulator> {
  const options = parseOptions("Kubernetes emulator", optionsSchema, input);
  const validator = options.validate ? await SchemaValidator.load(options.invokedFrom === "cli" ? "--no-validate" : "validate: false") : undefined;
  // With subjectAltName: kubectl and client-go check the server's address against it.
  const certificate = options.tls ? await generateTlsIdentity("flame-ts kubernetes emulator", ["127.0.0.1", "localhost"]) : undefined;
  const token = options.token ?? randomBytes(24).toString("base64url");
  const user = `system:serviceaccount:${options.namespace}:${options.serviceAccount}`;
  let api: KubernetesApi | undefined;
  const handler: Parameters<typeof createHttpServer>[1] = (request, response) => {
    request.on("error", () => undefined);
    void api!.handle(request, response);
  };
  const server: Server = certificate ? createHttpsServer({ cert: certificate.certificatePem, key: certificate.keyPem }, handler) : createHttpServer(handler);
  server.keepAliveTimeout = 5_000;
  server.on("clientError", (_error, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: options.port }, () => resolve());
  });
  server.on("error", () => undefined);
  const port = (server.address() as AddressInfo).port;
  const url = `${certificate ? "https" : "http"}://127.0.0.1:${port}`;
  const env = process.env;
  const cluster = new EmulatedCluster(
    {
      cwd: options.cwd ?? process.cwd(),
      baseEnv: options.baseEnv ?? Object.fromEntries(["PATH", "HOME", "LANG", "TMPDIR"].flatMap((key) => (env[key] ? [[key, env[key]!]] : []))),
      serviceHost: "127.0.0.1",
      servicePort: port,
      schedulingDelay: options.schedulingDelay,
      imagePullBackOffAfter: options.imagePullBackOffAfter,
      echoOutput: options.echoOutput,
    },
    options.historyLimit,
    [options.namespace, ...options.namespaces],
  );
  const watches = new WatchStreams(cluster.store, options.bookmarkInterval, (object) => object);
  api = new KubernetesApi({ token, rules: options.rules, user, validator, serverAddress: `127.0.0.1:${port}` }, cluster, watches);
  const endpoint = { url, token, caCertificate: certificate?.certificatePem, namespace: options.namespace };
  /** Temporary directories the emulator made for kubeconfigs and service accounts: removed on close. */
  const temporaryDirectories: string[] = [];
  const remember = <T>(made: T, directory: string | undefined): T => {
    if (directory) temporaryDirectories.push(directory);
    return made;
  };
  let closing: Promise<void> | undefined;
  return {
    url,
    token,
    caCertificate: certificate?.certificatePem,
    namespace: options.namespace,
    user,
    pods: (namespace) => cluster.store.list("pods", namespace),
    secrets: (namespace) => cluster.store.list("secrets", namespace),
    configMaps: (namespace) => cluster.store.list("configmaps", namespace),
    podProcesses: () =>
      cluster.podRecords.map(({ namespace, name, uid, runtime, deleted }) => ({
        namespace,
        name,
        uid,
        env: { ...runtime.env },
        pid: runtime.pid,
        exitCode: runtime.exitCode,
        restarts: runtime.restarts,
        output: runtime.output,
        deleted,
      })),
    requests: () => api!.requests.map((entry) => ({ ...entry })),
    violations: () => api!.violations.map((entry) => ({ ...entry })),
    failNext: (operation, fault) => api!.failNext(operation, fault),
    nextPods: (...faults) => void cluster.podFaults.push(...faults),
    clearFaults: () => {
      api!.clearFaults();
      cluster.podFaults.length = 0;
    },
    evictPod: (name, namespace = options.namespace, message) => cluster.evict(namespace, name, message),
    addExternalPod: (spec) => cluster.addExternalPod({ namespace: options.namespace, ...spec }),
    dropWatches: () => watches.dropAll(),
    openWatches: () => watches.count,
    compact: () => cluster.store.compact(),
    writeKubeconfig: async (path) => {
      const written = await writeKubeconfigFile(endpoint, path);
      return remember(written, path ? undefined : dirname(written));
    },
    writeServiceAccount: async (directory) => {
      const written = await writeServiceAccountDirectory(endpoint, directory);
      return remember(written, directory ? undefined : written.directory);
    },
    close: () =>
      (closing ??= (async () => {
        watches.endAll();
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await Promise.all([stopped, cluster.close(), ...temporaryDirectories.map((directory) => rm(directory, { recursive: true, force: true }))]);
      })()),
  };
}
