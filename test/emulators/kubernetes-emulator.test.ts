/**
 * The Kubernetes API emulator (src/emulators/kubernetes/) against the API
 * server's semantics the KubernetesBackend relies on: pods as real processes
 * with their status following them, Secrets, watches (replay, selectors,
 * 410 after compaction), graceful deletion, owner-reference garbage
 * collection, faults, RBAC and strict validation.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { describeK8sEmulator, parseK8sEmulatorArgs } from "../../src/emulators/kubernetes/cli.js";
import type { KubernetesEmulator, KubernetesEmulatorOptions } from "../../src/emulators/kubernetes/emulator.js";
import { MissingSchemaPackageError } from "../../src/emulators/kubernetes/schema.js";
import { isAlive, waitFor } from "../support/processes.js";
import { kubernetesRequest, nodeCommand, openWatch, podManifest, startTestKubernetesEmulator, type OpenWatch } from "../support/kubernetes.js";

const PODS = "/api/v1/namespaces/default/pods";
const SECRETS = "/api/v1/namespaces/default/secrets";
/** Prints a line and exits 0. */
const HELLO = nodeCommand(`console.log("hello from " + process.env.POD_NAME); console.error("to stderr")`);
/** Runs until killed. */
const SLEEPER = nodeCommand(`console.log("up"); setInterval(() => {}, 1000)`);
/** Ignores SIGTERM: only SIGKILL ends it. */
const STUBBORN = nodeCommand(`process.on("SIGTERM", () => console.log("ignoring SIGTERM")); console.log("up"); setInterval(() => {}, 1000)`);

let emulator: KubernetesEmulator | undefined;
const watches: OpenWatch[] = [];

async function start(options: KubernetesEmulatorOptions = {}): Promise<KubernetesEmulator> {
  emulator = await startTestKubernetesEmulator(options);
  return emulator;
}

async function watch(path: string): Promise<OpenWatch> {
  const opened = await openWatch(emulator!, path);
  watches.push(opened);
  return opened;
}

afterEach(async () => {
  for (const opened of watches.splice(0)) opened.close();
  await emulator?.close();
  emulator = undefined;
});

const phaseOf = (name: string, phase: string) => (event: { type: string; object: any }) => event.object?.metadata?.name === name && event.object?.status?.phase === phase;
const waitingReason = (name: string, reason: string) => (event: { type: string; object: any }) =>
  event.object?.metadata?.name === name && event.object?.status?.containerStatuses?.[0]?.state?.waiting?.reason === reason;

describe("pods as real processes", () => {
  it("runs the container's command, moves Pending -> Running -> Succeeded with the kubelet's statuses, and serves its log", async () => {
    const k8s = await start();
    const events = await watch(`${PODS}?watch=1`);
    const pod = podManifest("hello", HELLO, { env: [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }], labels: { app: "flame" } });
    const created = await kubernetesRequest(k8s, "POST", PODS, pod);
    expect(created.status).toBe(201);
    expect(created.body.metadata).toMatchObject({ name: "hello", namespace: "default", uid: expect.stringMatching(/^[0-9a-f-]{36}$/), resourceVersion: expect.stringMatching(/^\d+$/) });
    expect(created.body.status.phase).toBe("Pending");
    expect(created.body.spec).toMatchObject({ restartPolicy: "Never", serviceAccountName: "default", dnsPolicy: "ClusterFirst" });

    const running = await events.next(phaseOf("hello", "Running"));
    expect(running.object.spec.nodeName).toBe("emulated-node");
    expect(running.object.status).toMatchObject({ podIP: "127.0.0.1", hostIP: "127.0.0.1", podIPs: [{ ip: "127.0.0.1" }], startTime: expect.any(String) });
    expect(running.object.status.containerStatuses[0]).toMatchObject({ name: "runner", ready: true, restartCount: 0, state: { running: { startedAt: expect.any(String) } } });
    expect(running.object.status.conditions.find((condition: any) => condition.type === "Ready")).toMatchObject({ status: "True" });
    const done = await events.next(phaseOf("hello", "Succeeded"));
    expect(done.object.status.containerStatuses[0].state.terminated).toMatchObject({ exitCode: 0, reason: "Completed", startedAt: expect.any(String), finishedAt: expect.any(String) });
    // Every change was its own resourceVersion, increasing.
    const versions = events.events.map((event) => Number(event.object.metadata.resourceVersion));
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
    expect(new Set(versions).size).toBe(versions.length);
    expect(events.events.some(waitingReason("hello", "ContainerCreating"))).toBe(true);

    const log = await kubernetesRequest(k8s, "GET", `${PODS}/hello/log?container=runner`);
    expect(log.status).toBe(200);
    expect(log.headers["content-type"]).toBe("text/plain");
    expect(log.body).toContain("hello from hello\n");
    expect(log.body).toContain("to stderr\n");
    expect((await kubernetesRequest(k8s, "GET", `${PODS}/hello/log?tailLines=1`)).body.split("\n").filter(Boolean)).toHaveLength(1);

    const [process] = k8s.podProcesses();
    expect(process).toMatchObject({ name: "hello", exitCode: 0 });
    expect(process!.env).toMatchObject({ POD_NAME: "hello", HOSTNAME: "hello", KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: new URL(k8s.url).port });
    expect(k8s.violations()).toEqual([]);
    expect((await kubernetesRequest(k8s, "GET", `${PODS}/hello/log?container=other`)).body.message).toBe("container other is not valid for pod hello");
  });

  it("fails a pod whose process exits nonzero: terminated reason Error, phase Failed", async () => {
    const k8s = await start();
    const events = await watch(`${PODS}?watch=1`);
    await kubernetesRequest(k8s, "POST", PODS, podManifest("exits-3", nodeCommand("process.exit(3)")));
    const failed = await events.next(phaseOf("exits-3", "Failed"));
    expect(failed.object.status.containerStatuses[0].state.terminated).toMatchObject({ exitCode: 3, reason: "Error" });
  });

  it("waits with CreateContainerConfigError while a referenced Secret is missing, and starts once it appears", async () => {
    const k8s = await start();
    const events = await watch(`${PODS}?watch=1`);
    const pod = podManifest("early", nodeCommand(`console.log("token=" + process.env.TOKEN + " from=" + process.env.FROM_mode)`), {
      env: [{ name: "TOKEN", valueFrom: { secretKeyRef: { name: "runner-secret", key: "token" } } }],
      envFrom: [{ secretRef: { name: "runner-secret" }, prefix: "FROM_" }],
    });
    expect((await kubernetesRequest(k8s, "POST", PODS, pod)).status).toBe(201);
    const waiting = await events.next(waitingReason("early", "CreateContainerConfigError"));
    expect(waiting.object.status.containerStatuses[0].state.waiting.message).toBe('secret "runner-secret" not found');
    expect(waiting.object.status.phase).toBe("Pending");

    const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: "runner-secret" }, stringData: { token: "s3cret", mode: "strict" } };
    const created = await kubernetesRequest(k8s, "POST", SECRETS, secret);
    expect(created.status).toBe(201);
    // stringData is folded into data, base64, as the API server does.
    expect(created.body.data).toEqual({ token: Buffer.from("s3cret").toString("base64"), mode: Buffer.from("strict").toString("base64") });
    expect(created.body.stringData).toBeUndefined();
    expect(created.body.type).toBe("Opaque");

    await events.next(phaseOf("early", "Succeeded"));
    expect((await kubernetesRequest(k8s, "GET", `${PODS}/early/log`)).body).toBe("token=s3cret from=strict\n");
  });

  it("names a missing key as the kubelet does, and lets optional references be absent", async () => {
    const k8s = await start();
    const events = await watch(`${PODS}?watch=1`);
    await kubernetesRequest(k8s, "POST", "/api/v1/namespaces/default/configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "settings" }, data: { other: "x" } });
    await kubernetesRequest(k8s, "POST", PODS, podManifest("keyless", HELLO, {
      env: [
        { name: "LEVEL", valueFrom: { configMapKeyRef: { name: "settings", key: "level" } } },
        { name: "MAYBE", valueFrom: { secretKeyRef: { name: "absent", key: "k", optional: true } } },
      ],
    }));
    const waiting = await events.next(waitingReason("keyless", "CreateContainerConfigError"));
    expect(waiting.object.status.containerStatuses[0].state.waiting.message).toBe("couldn't find key level in ConfigMap default/settings");
    const patched = await kubernetesRequest(k8s, "PATCH", "/api/v1/namespaces/default/configmaps/settings", { data: { level: "3" } }, { contentType: "application/merge-patch+json" });
    expect(patched.body.data).toEqual({ other: "x", level: "3" });
    await events.next(phaseOf("keyless", "Succeeded"));
    expect(k8s.podProcesses()[0]!.env).toMatchObject({ LEVEL: "3" });
    expect(k8s.podProcesses()[0]!.env.MAYBE).toBeUndefined();
  });

  it("generates names from generateName and refuses a taken name with AlreadyExists", async () => {
    const k8s = await start();
    const pod = podManifest("", SLEEPER) as any;
    delete pod.metadata.name;
    pod.metadata.generateName = "flame-runner-";
    const created = await kubernetesRequest(k8s, "POST", PODS, pod);
    expect(created.body.metadata.name).toMatch(/^flame-runner-[a-z0-9]{5}$/);
    const again = await kubernetesRequest(k8s, "POST", PODS, { ...pod, metadata: { name: created.body.metadata.name } });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ kind: "Status", status: "Failure", reason: "AlreadyExists", code: 409, message: `pods "${created.body.metadata.name}" already exists`, details: { name: created.body.metadata.name, kind: "pods" } });
    const missing = await kubernetesRequest(k8s, "GET", `${PODS}/nope`);
    expect(missing.body).toMatchObject({ reason: "NotFound", code: 404, message: 'pods "nope" not found' });
    expect((await kubernetesRequest(k8s, "POST", "/api/v1/namespaces/elsewhere/pods", podManifest("x", SLEEPER))).body).toMatchObject({ reason: "NotFound", message: 'namespaces "elsewhere" not found' });
  });
});

describe("watches", () => {
  it("replays every change after a resourceVersion, filters by label and field selectors, and answers 410 Expired after compaction", async () => {
    const k8s = await start();
    const first = await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "a", labels: { app: "flame", role: "runner" } } });
    const from = first.body.metadata.resourceVersion;
    await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "b", labels: { app: "other" } } });
    await kubernetesRequest(k8s, "PATCH", `${SECRETS}/a`, { metadata: { labels: { touched: "yes" } } }, { contentType: "application/merge-patch+json" });
    await kubernetesRequest(k8s, "DELETE", `${SECRETS}/a`);

    const replay = await watch(`${SECRETS}?watch=1&resourceVersion=${from}&labelSelector=${encodeURIComponent("app in (flame),role!=parent")}`);
    await replay.next((event) => event.type === "DELETED");
    expect(replay.events.map((event) => `${event.type} ${event.object.metadata.name}`)).toEqual(["MODIFIED a", "DELETED a"]);

    const list = await kubernetesRequest(k8s, "GET", `${SECRETS}?labelSelector=app%3Dother`);
    expect(list.body).toMatchObject({ kind: "SecretList", apiVersion: "v1", metadata: { resourceVersion: expect.any(String) } });
    expect(list.body.items.map((item: any) => item.metadata.name)).toEqual(["b"]);
    expect((await kubernetesRequest(k8s, "GET", `${SECRETS}?fieldSelector=metadata.name%3Db`)).body.items).toHaveLength(1);
    expect((await kubernetesRequest(k8s, "GET", `${SECRETS}?labelSelector=!app`)).body.items).toHaveLength(0);
    expect((await kubernetesRequest(k8s, "GET", `${SECRETS}?labelSelector=${encodeURIComponent("app in (x")}`)).status).toBe(400);

    // Without a resourceVersion: the current objects first, as ADDED.
    const fresh = await watch(`${SECRETS}?watch=1`);
    await fresh.next((event) => event.type === "ADDED" && event.object.metadata.name === "b");

    k8s.compact();
    const expired = await watch(`${SECRETS}?watch=1&resourceVersion=${from}`);
    const error = await expired.next((event) => event.type === "ERROR");
    expect(error.object).toMatchObject({ kind: "Status", apiVersion: "v1", status: "Failure", reason: "Expired", code: 410, message: expect.stringMatching(/^too old resource version: \d+ \(\d+\)$/) });
    expect(await expired.ended).toBe("end");
    // From the newest resourceVersion a watch still works after compaction.
    const current = await watch(`${SECRETS}?watch=1&resourceVersion=${list.body.metadata.resourceVersion}`);
    expect(current.events).toHaveLength(0);
  });

  it("forgets beyond historyLimit, sends bookmarks, ends at timeoutSeconds, and dropWatches() breaks open streams", async () => {
    const k8s = await start({ historyLimit: 2, bookmarkInterval: 50 });
    const first = await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "s1" } });
    for (const name of ["s2", "s3", "s4"]) await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name } });
    const tooOld = await watch(`${SECRETS}?watch=1&resourceVersion=${first.body.metadata.resourceVersion}`);
    expect((await tooOld.next((event) => event.type === "ERROR")).object.code).toBe(410);

    const bookmarked = await watch(`${SECRETS}?watch=1&resourceVersion=${k8s.secrets().at(-1)!.metadata.resourceVersion}&allowWatchBookmarks=true&timeoutSeconds=1`);
    const bookmark = await bookmarked.next((event) => event.type === "BOOKMARK");
    expect(bookmark.object).toEqual({ kind: "Secret", apiVersion: "v1", metadata: { resourceVersion: k8s.secrets().at(-1)!.metadata.resourceVersion } });
    expect(await bookmarked.ended).toBe("end");

    const dropped = await watch(`${SECRETS}?watch=1`);
    await waitFor(() => k8s.openWatches() === 1, "the watch to be open", 2_000);
    k8s.dropWatches();
    expect(await dropped.ended).toBe("error");
  });

  it("reports a pod leaving a label selector as DELETED and entering it as ADDED", async () => {
    const k8s = await start();
    await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "moving", labels: { pool: "a" } } });
    const poolA = await watch(`${SECRETS}?watch=1&labelSelector=pool%3Da`);
    const poolB = await watch(`${SECRETS}?watch=1&labelSelector=pool%3Db`);
    await poolA.next((event) => event.type === "ADDED");
    await kubernetesRequest(k8s, "PATCH", `${SECRETS}/moving`, { metadata: { labels: { pool: "b" } } }, { contentType: "application/merge-patch+json" });
    await poolA.next((event) => event.type === "DELETED");
    await poolB.next((event) => event.type === "ADDED");
  });
});

describe("deletion and garbage collection", () => {
  it("deletes a running pod gracefully: deletionTimestamp at once, SIGTERM, SIGKILL after the grace period, DELETED once the process is gone", async () => {
    const k8s = await start();
    const events = await watch(`${PODS}?watch=1`);
    await kubernetesRequest(k8s, "POST", PODS, podManifest("stubborn", STUBBORN));
    await events.next(phaseOf("stubborn", "Running"));
    await waitFor(() => k8s.podProcesses()[0]!.output.includes("up"), "the process to start", 5_000);
    const pid = k8s.podProcesses()[0]!.pid!;
    const started = Date.now();
    const answer = await kubernetesRequest(k8s, "DELETE", `${PODS}/stubborn`, { kind: "DeleteOptions", apiVersion: "v1", gracePeriodSeconds: 1, propagationPolicy: "Background" });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ kind: "Pod", metadata: { name: "stubborn", deletionTimestamp: expect.any(String), deletionGracePeriodSeconds: 1 } });
    const deleted = await events.next((event) => event.type === "DELETED", 5_000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(deleted.object.status.containerStatuses[0].state.terminated.exitCode).toBe(137);
    expect(isAlive(pid)).toBe(false);
    expect(k8s.podProcesses()[0]!.output).toContain("ignoring SIGTERM");
    expect(k8s.pods()).toEqual([]);
  });

  it("deletes a pod that honours SIGTERM as soon as it exits", async () => {
    const k8s = await start();
    const events = await watch(`${PODS}?watch=1`);
    await kubernetesRequest(k8s, "POST", PODS, podManifest("polite", SLEEPER, { terminationGracePeriodSeconds: 30 }));
    await events.next(phaseOf("polite", "Running"));
    const started = Date.now();
    await kubernetesRequest(k8s, "DELETE", `${PODS}/polite`);
    const deleted = await events.next((event) => event.type === "DELETED");
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(deleted.object.status.containerStatuses[0].state.terminated.exitCode).toBe(143);
  });

  it("collects pods and Secrets owned by a deleted pod (the parent), but not with propagationPolicy Orphan", async () => {
    const k8s = await start();
    const parent = k8s.addExternalPod({ name: "parent", image: "registry.example/app:v7", imagePullPolicy: "IfNotPresent", imagePullSecrets: [{ name: "regcred" }], labels: { app: "parent" } });
    const read = await kubernetesRequest(k8s, "GET", `${PODS}/parent`);
    expect(read.body.spec.containers[0]).toMatchObject({ image: "registry.example/app:v7", imagePullPolicy: "IfNotPresent" });
    expect(read.body.spec.imagePullSecrets).toEqual([{ name: "regcred" }]);
    expect(read.body.status.phase).toBe("Running");
    const owner = [{ apiVersion: "v1", kind: "Pod", name: "parent", uid: parent.metadata.uid, controller: false }];
    const events = await watch(`${PODS}?watch=1`);
    await kubernetesRequest(k8s, "POST", PODS, podManifest("runner-1", SLEEPER, { ownerReferences: owner }));
    await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "runner-1-token" }, stringData: { token: "x" } });
    // The backend adds the owner to the Secret with a merge patch once the pod exists.
    const runnerUid = k8s.pods().find((pod) => pod.metadata.name === "runner-1")!.metadata.uid;
    const patched = await kubernetesRequest(k8s, "PATCH", `${SECRETS}/runner-1-token`, { metadata: { ownerReferences: [{ apiVersion: "v1", kind: "Pod", name: "runner-1", uid: runnerUid }] } }, { contentType: "application/merge-patch+json" });
    expect(patched.status).toBe(200);
    expect(patched.body.metadata.ownerReferences[0].uid).toBe(runnerUid);
    await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "unrelated" } });
    await events.next(phaseOf("runner-1", "Running"));

    expect((await kubernetesRequest(k8s, "DELETE", `${PODS}/parent`)).status).toBe(200);
    await events.next((event) => event.type === "DELETED" && event.object.metadata.name === "runner-1");
    await waitFor(() => k8s.secrets().every((secret) => secret.metadata.name !== "runner-1-token"), "the runner's Secret to be collected", 5_000);
    expect(k8s.secrets().map((secret) => secret.metadata.name)).toEqual(["unrelated"]);
    expect(k8s.pods()).toEqual([]);

    const second = k8s.addExternalPod({ name: "parent-2", image: "app:v7" });
    await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "orphan", ownerReferences: [{ apiVersion: "v1", kind: "Pod", name: "parent-2", uid: second.metadata.uid }] } });
    await kubernetesRequest(k8s, "DELETE", `${PODS}/parent-2?propagationPolicy=Orphan`);
    const orphan = await kubernetesRequest(k8s, "GET", `${SECRETS}/orphan`);
    expect(orphan.status).toBe(200);
    expect(orphan.body.metadata.ownerReferences).toBeUndefined();
  });

  it("force-deletes with gracePeriodSeconds 0: DELETED at once, no MODIFIED first, the process killed", async () => {
    const k8s = await start();
    const events = await watch(`${PODS}?watch=1`);
    await kubernetesRequest(k8s, "POST", PODS, podManifest("forced", STUBBORN, { terminationGracePeriodSeconds: 30 }));
    await events.next(phaseOf("forced", "Running"));
    await waitFor(() => k8s.podProcesses()[0]!.output.includes("up"), "the process to start", 5_000);
    const pid = k8s.podProcesses()[0]!.pid!;
    const before = events.events.length;
    const answer = await kubernetesRequest(k8s, "DELETE", `${PODS}/forced?gracePeriodSeconds=0`);
    expect(answer.status).toBe(200);
    expect(answer.body.kind).toBe("Pod");
    await events.next((event) => event.type === "DELETED");
    expect(events.events.slice(before).map((event) => event.type)).toEqual(["DELETED"]);
    await waitFor(() => !isAlive(pid), "the forced pod's process to die", 2_000);
  });

  it("deletes dependents before the owner with propagationPolicy Foreground", async () => {
    const k8s = await start();
    const owner = await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "owner" } });
    const events = await watch(`${PODS}?watch=1`);
    await kubernetesRequest(k8s, "POST", PODS, podManifest("dependent", SLEEPER, { ownerReferences: [{ apiVersion: "v1", kind: "Secret", name: "owner", uid: owner.body.metadata.uid }] }));
    await events.next(phaseOf("dependent", "Running"));
    const secrets = await watch(`${SECRETS}?watch=1&resourceVersion=${owner.body.metadata.resourceVersion}`);
    const answer = await kubernetesRequest(k8s, "DELETE", `${SECRETS}/owner`, { propagationPolicy: "Foreground" });
    // The owner is marked at once, and stays until its dependents are gone.
    expect(answer.body).toMatchObject({ kind: "Secret", metadata: { finalizers: ["foregroundDeletion"], deletionTimestamp: expect.any(String) } });
    const ownerGone = await secrets.next((event) => event.type === "DELETED");
    const dependentGone = await events.next((event) => event.type === "DELETED");
    expect(Number(dependentGone.object.metadata.resourceVersion)).toBeLessThan(Number(ownerGone.object.metadata.resourceVersion));
  });

  it("restarts a failed container with restartPolicy OnFailure, counting restarts", async () => {
    const k8s = await start();
    const events = await watch(`${PODS}?watch=1`);
    const pod = podManifest("flaky", nodeCommand(`const fs = require("node:fs"); const marker = process.env.MARKER; if (!fs.existsSync(marker)) { fs.writeFileSync(marker, ""); process.exit(1); }`)) as any;
    pod.spec.restartPolicy = "OnFailure";
    pod.spec.containers[0].env = [{ name: "MARKER", value: join(await mkdtemp(join(tmpdir(), "flaky-")), "ran") }];
    await kubernetesRequest(k8s, "POST", PODS, pod);
    const succeeded = await events.next(phaseOf("flaky", "Succeeded"));
    expect(succeeded.object.status.containerStatuses[0]).toMatchObject({ restartCount: 1, lastState: { terminated: { exitCode: 1, reason: "Error" } } });
    expect(events.events.some(waitingReason("flaky", "CrashLoopBackOff"))).toBe(true);
  });

  it("answers a Secret's delete with a success Status and a second delete with NotFound", async () => {
    const k8s = await start();
    await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "gone" }, data: { k: "dg==" } });
    const deleted = await kubernetesRequest(k8s, "DELETE", `${SECRETS}/gone`);
    expect(deleted.body).toMatchObject({ kind: "Status", status: "Success", details: { name: "gone", kind: "secrets" } });
    expect((await kubernetesRequest(k8s, "DELETE", `${SECRETS}/gone`)).body.reason).toBe("NotFound");
  });
});

describe("faults", () => {
  it("forces API answers with failNext: 429 with Retry-After, 500, 409, then serves normally", async () => {
    const k8s = await start();
    k8s.failNext("createPod", { status: 429, retryAfter: 2 });
    k8s.failNext("listPods", { status: 500, times: 2 });
    k8s.failNext("createSecret", { status: 409, message: "conflict!" });
    const throttled = await kubernetesRequest(k8s, "POST", PODS, podManifest("p", HELLO));
    expect(throttled.status).toBe(429);
    expect(throttled.headers["retry-after"]).toBe("2");
    expect(throttled.body).toMatchObject({ kind: "Status", reason: "TooManyRequests", code: 429, details: { retryAfterSeconds: 2 } });
    expect(k8s.pods()).toEqual([]);
    expect((await kubernetesRequest(k8s, "GET", PODS)).body.reason).toBe("InternalError");
    expect((await kubernetesRequest(k8s, "GET", PODS)).status).toBe(500);
    expect((await kubernetesRequest(k8s, "GET", PODS)).status).toBe(200);
    expect((await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "s" } })).body).toMatchObject({ reason: "Conflict", message: "conflict!" });
    expect(k8s.requests().filter((request) => request.fault).map((request) => request.operation)).toEqual(["createPod", "listPods", "listPods", "createSecret"]);
  });

  it("injects image-pull, config, unschedulable, crash and slow-scheduling faults, and evictions", async () => {
    const k8s = await start();
    const events = await watch(`${PODS}?watch=1`);
    k8s.nextPods({ kind: "image-pull" }, { kind: "unschedulable" }, { kind: "crash", exitCode: 2 }, { kind: "config-error", message: 'secret "x" not found' }, { kind: "slow-scheduling", delay: 300 });
    const created = Date.now();
    for (const name of ["pull", "unschedulable", "crash", "config", "slow"]) await kubernetesRequest(k8s, "POST", PODS, podManifest(name, SLEEPER));

    const backOff = await events.next(waitingReason("pull", "ImagePullBackOff"));
    expect(backOff.object.status.containerStatuses[0].state.waiting.message).toBe('Back-off pulling image "flame-ts/runner:test"');
    expect(events.events.some(waitingReason("pull", "ErrImagePull"))).toBe(true);
    const unschedulable = await events.next((event) => event.object.metadata.name === "unschedulable" && event.object.status.conditions?.[0]?.reason === "Unschedulable");
    expect(unschedulable.object.status.conditions[0]).toMatchObject({ type: "PodScheduled", status: "False", message: expect.stringContaining("0/1 nodes are available") });
    const schedulingEvents = await kubernetesRequest(k8s, "GET", `/api/v1/namespaces/default/events?fieldSelector=${encodeURIComponent("involvedObject.name=unschedulable,involvedObject.kind=Pod")}`);
    expect(schedulingEvents.body.items).toEqual([
      expect.objectContaining({ type: "Warning", reason: "FailedScheduling", message: unschedulable.object.status.conditions[0].message, source: { component: "default-scheduler" } }),
    ]);
    const crashed = await events.next(phaseOf("crash", "Failed"));
    expect(crashed.object.status.containerStatuses[0].state.terminated).toMatchObject({ exitCode: 2, reason: "Error" });
    await events.next(waitingReason("config", "CreateContainerConfigError"));
    await events.next(phaseOf("slow", "Running"));
    expect(Date.now() - created).toBeGreaterThanOrEqual(290);

    k8s.evictPod("slow");
    const evicted = await events.next((event) => phaseOf("slow", "Failed")(event) && event.object.status.reason === "Evicted");
    expect(evicted.object.status.message).toContain("low on resource");
    expect(evicted.object.status.conditions.find((condition: any) => condition.type === "DisruptionTarget")).toMatchObject({ status: "True" });
    const logs = await kubernetesRequest(k8s, "GET", `${PODS}/pull/log`);
    expect(logs.body).toMatchObject({ reason: "BadRequest", message: 'container "runner" in pod "pull" is waiting to start: ImagePullBackOff' });
  });

  it("fails a pod past its activeDeadlineSeconds with reason DeadlineExceeded", async () => {
    const k8s = await start();
    const events = await watch(`${PODS}?watch=1`);
    const pod = podManifest("deadline", SLEEPER) as any;
    pod.spec.activeDeadlineSeconds = 1;
    await kubernetesRequest(k8s, "POST", PODS, pod);
    const failed = await events.next((event) => phaseOf("deadline", "Failed")(event), 5_000);
    expect(failed.object.status.reason).toBe("DeadlineExceeded");
  });
});

describe("authentication, RBAC and validation", () => {
  it("answers 401 without the token and 403 for what the Role does not allow, worded as the API server; records the verbs", async () => {
    const k8s = await start({
      namespace: "flame",
      serviceAccount: "flame-parent",
      rules: [
        { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch", "create"] },
        { apiGroups: [""], resources: ["secrets"], verbs: ["create"] },
      ],
    });
    const unauthorized = await kubernetesRequest(k8s, "GET", "/api/v1/namespaces/flame/pods", undefined, { token: "wrong" });
    expect(unauthorized.body).toMatchObject({ kind: "Status", reason: "Unauthorized", code: 401 });
    expect((await kubernetesRequest(k8s, "GET", "/version", undefined, { token: null })).status).toBe(200);

    const refused = await kubernetesRequest(k8s, "DELETE", "/api/v1/namespaces/flame/pods/x");
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({
      reason: "Forbidden",
      code: 403,
      message: 'pods "x" is forbidden: User "system:serviceaccount:flame:flame-parent" cannot delete resource "pods" in API group "" in the namespace "flame"',
      details: { name: "x", kind: "pods" },
    });
    expect((await kubernetesRequest(k8s, "GET", "/api/v1/namespaces/flame/pods/x/log")).body.message).toBe(
      'pods "x" is forbidden: User "system:serviceaccount:flame:flame-parent" cannot get resource "pods/log" in API group "" in the namespace "flame"',
    );
    expect((await kubernetesRequest(k8s, "GET", "/api/v1/namespaces/flame/secrets")).body.message).toBe(
      'secrets is forbidden: User "system:serviceaccount:flame:flame-parent" cannot list resource "secrets" in API group "" in the namespace "flame"',
    );
    const review = (verb: string, resource: string, subresource?: string) =>
      kubernetesRequest(k8s, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SelfSubjectAccessReview",
        spec: { resourceAttributes: { namespace: "flame", verb, group: "", resource, ...(subresource ? { subresource } : {}) } },
      });
    const allowed = await review("create", "pods");
    expect(allowed.status).toBe(201);
    expect(allowed.body.status.allowed).toBe(true);
    expect((await review("delete", "secrets")).body.status.allowed).toBe(false);
    expect((await review("get", "pods", "log")).body.status.allowed).toBe(false);
    await kubernetesRequest(k8s, "GET", "/api/v1/namespaces/flame/pods?watch=1&timeoutSeconds=0");
    expect(k8s.requests().map(({ verb, group, resource, subresource, namespace, name }) => ({ verb, group, resource, subresource, namespace, name }))).toEqual([
      { verb: "delete", group: "", resource: "pods", subresource: undefined, namespace: "flame", name: "x" },
      { verb: "get", group: "", resource: "pods", subresource: "log", namespace: "flame", name: "x" },
      { verb: "list", group: "", resource: "secrets", subresource: undefined, namespace: "flame", name: undefined },
      { verb: "create", group: "authorization.k8s.io", resource: "selfsubjectaccessreviews", subresource: undefined, namespace: undefined, name: undefined },
      { verb: "create", group: "authorization.k8s.io", resource: "selfsubjectaccessreviews", subresource: undefined, namespace: undefined, name: undefined },
      { verb: "create", group: "authorization.k8s.io", resource: "selfsubjectaccessreviews", subresource: undefined, namespace: undefined, name: undefined },
      { verb: "watch", group: "", resource: "pods", subresource: undefined, namespace: "flame", name: undefined },
    ]);
  });

  it("refuses unknown fields (strict decoding), wrong types and malformed bodies, and records each as a violation", async () => {
    const k8s = await start();
    const unknown = podManifest("strict", HELLO) as any;
    unknown.spec.containers[0].imagePullPolicyy = "Always";
    unknown.spec.bogus = true;
    const refused = await kubernetesRequest(k8s, "POST", PODS, unknown);
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ reason: "BadRequest", message: 'strict decoding error: unknown field "spec.bogus", unknown field "spec.containers[0].imagePullPolicyy"' });
    const wrongType = podManifest("typed", HELLO) as any;
    wrongType.spec.containers[0].env = [{ name: "N", value: 3 }];
    const invalid = await kubernetesRequest(k8s, "POST", PODS, wrongType);
    expect(invalid.status).toBe(422);
    expect(invalid.body).toMatchObject({ reason: "Invalid", details: { name: "typed", kind: "Pod", causes: [{ field: "spec.containers[0].env[0].value" }] } });
    expect((await kubernetesRequest(k8s, "POST", PODS, "{not json")).status).toBe(400);
    expect((await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "Bad_Name" } })).status).toBe(422);
    expect((await kubernetesRequest(k8s, "PATCH", `${SECRETS}/none`, { a: 1 }, { contentType: "application/json-patch+json" })).status).toBe(404);
    await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name: "ok" } });
    expect((await kubernetesRequest(k8s, "PATCH", `${SECRETS}/ok`, { metadata: { ownerReferences: [{ uid: "u" }] } }, { contentType: "application/merge-patch+json" })).status).toBe(422);
    expect((await kubernetesRequest(k8s, "PATCH", `${SECRETS}/ok`, { metadata: { labels: { a: "b" } } }, { contentType: "application/json-patch+json" })).status).toBe(415);
    expect(k8s.violations().map((violation) => violation.status)).toEqual([400, 422, 400, 422, 422, 415]);
    expect(k8s.violations()[0]).toMatchObject({ method: "POST", path: PODS, operation: "createPod", message: expect.stringContaining("strict decoding error") });
    expect(k8s.pods()).toEqual([]);
  });

  it("refuses what the emulator does not run: init containers, several containers", async () => {
    const k8s = await start({ validate: false });
    const pod = podManifest("init", HELLO) as any;
    pod.spec.initContainers = [{ name: "setup", image: "busybox" }];
    const refused = await kubernetesRequest(k8s, "POST", PODS, pod);
    expect(refused.status).toBe(422);
    expect(refused.body.message).toContain("not supported by the flame-ts Kubernetes emulator");
  });
});

describe("client configuration", () => {
  it("writes a kubeconfig and a service-account directory for in-cluster clients", async () => {
    const k8s = await start({ namespace: "flame" });
    expect(k8s.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const kubeconfig = await readFile(await k8s.writeKubeconfig(), "utf8");
    expect(kubeconfig).toContain(`server: ${k8s.url}`);
    expect(kubeconfig).toContain(`certificate-authority-data: ${Buffer.from(k8s.caCertificate!).toString("base64")}`);
    expect(kubeconfig).toContain("namespace: flame");
    const inCluster = await k8s.writeServiceAccount();
    expect(await readFile(join(inCluster.directory, "token"), "utf8")).toBe(k8s.token);
    expect(await readFile(join(inCluster.directory, "namespace"), "utf8")).toBe("flame");
    expect(await readFile(join(inCluster.directory, "ca.crt"), "utf8")).toBe(k8s.caCertificate);
    expect(inCluster.env).toEqual({ KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: new URL(k8s.url).port });
    const namespace = await kubernetesRequest(k8s, "GET", "/api/v1/namespaces/flame");
    expect(namespace.body).toMatchObject({ kind: "Namespace", metadata: { name: "flame" }, status: { phase: "Active" } });
    await k8s.close();
    expect(existsSync(inCluster.directory)).toBe(false);
  });

  it("names the package and the switch when kubernetes-models cannot be loaded", () => {
    const error = new MissingSchemaPackageError("--no-validate", new Error("Cannot find package 'kubernetes-models' imported from x"));
    expect(error.message).toMatch(/"kubernetes-models" package \(version 4\).*Cannot find package.*npm install --save-dev kubernetes-models@4.*--no-validate$/);
  });

  it("serves plain HTTP with tls: false", async () => {
    const k8s = await start({ tls: false });
    expect(k8s.url).toMatch(/^http:\/\//);
    expect(k8s.caCertificate).toBeUndefined();
    expect((await kubernetesRequest(k8s, "GET", "/api/v1/namespaces/default")).status).toBe(200);
  });
});

describe("odds and ends", () => {
  it("follows a log until the container exits", async () => {
    const k8s = await start();
    await kubernetesRequest(k8s, "POST", PODS, podManifest("chatty", nodeCommand(`let n = 0; const timer = setInterval(() => { console.log("line " + ++n); if (n === 3) { clearInterval(timer); } }, 50)`)));
    const events = await watch(`${PODS}?watch=1`);
    await events.next(phaseOf("chatty", "Running"));
    const followed = await kubernetesRequest(k8s, "GET", `${PODS}/chatty/log?follow=true`);
    expect(followed.body).toBe("line 1\nline 2\nline 3\n");
  });

  it("watches one pod by name, and sends initial events then a bookmark with sendInitialEvents", async () => {
    const k8s = await start();
    for (const name of ["one", "two"]) await kubernetesRequest(k8s, "POST", SECRETS, { apiVersion: "v1", kind: "Secret", metadata: { name } });
    const single = await watch(`${SECRETS}/two?watch=1`);
    await single.next((event) => event.type === "ADDED");
    expect(single.events.map((event) => event.object.metadata.name)).toEqual(["two"]);
    const initial = await watch(`${SECRETS}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan`);
    const end = await initial.next((event) => event.type === "BOOKMARK");
    expect(end.object.metadata.annotations).toEqual({ "k8s.io/initial-events-end": "true" });
    expect(initial.events.map((event) => `${event.type} ${event.object.metadata.name ?? ""}`)).toEqual(["ADDED one", "ADDED two", "BOOKMARK "]);
  });

  it("refuses a failNext for an operation it does not serve, naming the ones it does", async () => {
    const k8s = await start({ validate: false });
    expect(() => k8s.failNext("createPods", { status: 500 })).toThrow(/unknown operation "createPods".*createPod,/);
    expect(() => k8s.failNext("createPod", { status: 200 })).toThrow(/400-599/);
  });

  it("answers garbage with Status errors and keeps serving", async () => {
    const k8s = await start();
    const garbage: [string, unknown, string?][] = [
      [PODS, "null"],
      [PODS, "[1,2]"],
      [PODS, '{"apiVersion":"v1","kind":"Pod","metadata":"x"}'],
      [PODS, '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":{"name":1}}}'],
      [PODS, '{"apiVersion":"v2","kind":"Pod"}'],
      [SECRETS, '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"data":{"k":"not base64!"}}'],
      [SECRETS, "kind: Secret", "application/yaml"],
      ["/api/v1/namespaces/default/pods/%E0%A4%A", "{}"],
      ["/api/v1/namespaces/default/widgets", "{}"],
    ];
    for (const [path, body, contentType] of garbage) {
      const answer = await kubernetesRequest(k8s, "POST", path, body, contentType ? { contentType } : {});
      expect(answer.status, `${path} ${String(body)}`).toBeGreaterThanOrEqual(400);
      expect(answer.status).toBeLessThan(500);
      expect(answer.body.kind).toBe("Status");
    }
    expect((await kubernetesRequest(k8s, "GET", `${PODS}?labelSelector=${encodeURIComponent("a in (b")}`)).status).toBe(400);
    expect((await kubernetesRequest(k8s, "GET", `${PODS}?fieldSelector=spec.unknown%3Dx`)).body.message).toBe("field label not supported: spec.unknown");
    expect((await kubernetesRequest(k8s, "GET", `${PODS}?watch=1&resourceVersion=abc`)).status).toBe(400);
    expect((await kubernetesRequest(k8s, "GET", "/api/v1/namespaces/default")).status).toBe(200);
    expect(k8s.pods()).toEqual([]);
  });
});

describe("the k8s-emulator command", () => {
  it("parses its options and prints the kubeconfig, never the token", async () => {
    expect(parseK8sEmulatorArgs(["--port", "6443", "--namespace", "flame", "--no-tls", "--no-validate", "--quiet", "--kubeconfig", "/tmp/k"])).toEqual({
      emulator: { port: 6443, namespace: "flame", validate: false, tls: false, echoOutput: false },
      kubeconfig: "/tmp/k",
    });
    expect(() => parseK8sEmulatorArgs(["--port", "x"])).toThrow(/--port must be a port number/);
    expect(() => parseK8sEmulatorArgs(["--bogus"])).toThrow();
    const k8s = await start({ validate: false });
    const text = describeK8sEmulator(k8s, "/tmp/kubeconfig");
    expect(text).toContain("export KUBECONFIG=/tmp/kubeconfig");
    expect(text).not.toContain(k8s.token);
  });
});
