/**
 * KubernetesBackend against the Kubernetes API emulator: real runner
 * processes as pods, the real watch, Secrets, owner references and faults.
 * The parent is this test process, "running" in an external pod the emulator
 * knows (its image is what runners get; it owns them).
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { KubernetesBackend, type KubernetesBackendOptions } from "../../src/backends/kubernetes.js";
import type { KubernetesEmulator } from "../../src/emulators/kubernetes/emulator.js";
import { BootError } from "../../src/errors.js";
import { decodeRunnerEnv } from "../../src/protocol/runner-env.js";
import { makePool } from "../fixtures/app.js";
import { AGENT_MAIN } from "../support/fly.js";
import { fixtureEntry } from "../fixtures/app.js";
import { kubernetesRequest, startTestKubernetesEmulator } from "../support/kubernetes.js";
import { waitFor } from "../support/processes.js";
import { MIRROR_EXEC_ARGV } from "../support/backends.js";

const NAMESPACE = "jobs";
const PARENT_POD = "parent-0";
const IMAGE = "registry.example.com/app:v7";
const RUNNER_COMMAND = [process.execPath, ...MIRROR_EXEC_ARGV, AGENT_MAIN, fixtureEntry];

let emulator: KubernetesEmulator;
let kubeconfig: string;
let scratch: string;

beforeAll(async () => {
  emulator = await startTestKubernetesEmulator({ namespace: NAMESPACE });
  kubeconfig = await emulator.writeKubeconfig();
  scratch = await mkdtemp(join(tmpdir(), "flame-k8s-test-"));
});
afterAll(async () => {
  await emulator?.close();
  await rm(scratch, { recursive: true, force: true });
});

const pools: { stop(): Promise<void> }[] = [];
beforeEach(() => {
  if (!emulator.pods(NAMESPACE).some((pod: any) => pod.metadata.name === PARENT_POD)) {
    emulator.addExternalPod({ name: PARENT_POD, namespace: NAMESPACE, image: IMAGE, imagePullPolicy: "IfNotPresent", imagePullSecrets: [{ name: "regcred" }] });
  }
});
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
  emulator.clearFaults();
  await waitFor(() => runnerPods().length === 0 && runnerSecrets().length === 0, "every runner pod and Secret to be gone");
});

function backend(options: KubernetesBackendOptions = {}): KubernetesBackend {
  return new KubernetesBackend({
    kubeconfig,
    parentPod: { name: PARENT_POD },
    command: RUNNER_COMMAND,
    controlPlane: { host: "127.0.0.1", port: 0, advertisedHost: "127.0.0.1" },
    requestTimeout: 5_000,
    ...options,
  });
}

const isRunner = (object: any) => object.metadata?.labels?.["app.kubernetes.io/managed-by"] === "flame-ts";
const runnerPods = () => emulator.pods(NAMESPACE).filter(isRunner) as any[];
const runnerSecrets = () => emulator.secrets(NAMESPACE).filter(isRunner) as any[];

function recordingLog() {
  const lines: string[] = [];
  const record = (level: string) => (fields: Record<string, unknown>, message: string) => lines.push(`${level} ${message} ${JSON.stringify(fields)}`);
  return { lines, log: { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") } };
}

describe("KubernetesBackend on the emulator", () => {
  it("scales from 0 to max and back to 0, each runner a pod of the parent's image whose token is only in its Secret", async () => {
    const { lines, log } = recordingLog();
    const { pool, sleep } = makePool({ name: "k8s-scale", max: 3, maxConcurrency: 1, backend: backend(), idleShutdownAfter: 300, log });
    pools.push(pool);
    await pool.start();
    // Three calls at once, one per runner: the pool boots three pods (max), whichever of them ends up serving which call.
    const calls = Promise.all([sleep(1_500), sleep(1_500), sleep(1_500)]);
    await waitFor(() => runnerPods().length === 3, "three runner pods");
    const pods = runnerPods();
    const tokens = runnerSecrets().map((secret) => decodeRunnerEnv(Buffer.from(secret.data.FLAME_PARENT, "base64").toString()).token);
    // Each Secret is owned by its pod too, so deleting the pod by hand deletes it.
    await waitFor(() => runnerSecrets().every((secret) => secret.metadata.ownerReferences?.length === 2), "the Secrets to be owned by their pods");
    await calls;
    expect(tokens).toHaveLength(3);
    for (const pod of pods) {
      expect(pod.spec.containers[0].image).toBe(IMAGE);
      expect(pod.spec.imagePullSecrets).toEqual([{ name: "regcred" }]);
      expect(pod.spec.automountServiceAccountToken).toBe(false);
      expect(pod.metadata.ownerReferences?.[0]).toMatchObject({ kind: "Pod", name: PARENT_POD });
      for (const token of tokens) expect(JSON.stringify(pod)).not.toContain(token);
    }
    // The pool counts a runner until its delete has been answered; the pod may be gone a moment before.
    await waitFor(() => runnerPods().length === 0 && runnerSecrets().length === 0 && pool.stats().runners.total === 0, "idle runners to leave the pool, their pods and Secrets deleted");
    const everything = [lines.join("\n"), ...emulator.podProcesses().map((process) => process.output)].join("\n");
    for (const token of tokens) expect(everything).not.toContain(token);
    expect(emulator.violations()).toEqual([]);
  });

  it("deleting the parent pod garbage-collects its runners and their Secrets", async () => {
    const { pool, sleep } = makePool({ name: "k8s-gc", max: 2, maxConcurrency: 1, backend: backend({ terminationGracePeriodSeconds: 1 }) });
    pools.push(pool);
    const calls = [sleep(15_000), sleep(15_000)].map((call) => call.catch((error: unknown) => error));
    await waitFor(() => pool.stats().inFlight === 2, "both calls running on their runners");
    const deleted = await kubernetesRequest(emulator, "DELETE", `/api/v1/namespaces/${NAMESPACE}/pods/${PARENT_POD}`);
    expect(deleted.status).toBe(200);
    await waitFor(() => runnerPods().length === 0 && runnerSecrets().length === 0, "the parent's runners and Secrets to be collected");
    // Their processes are gone (SIGTERM, then SIGKILL after the pods' grace period), and so their calls fail as runner exits.
    for (const failure of await Promise.all(calls)) expect((failure as Error).message).toMatch(/exited before the call finished/);
    expect(emulator.podProcesses().filter((process) => process.name.startsWith("flame-k8s-gc")).map((process) => process.exitCode !== undefined)).toEqual([true, true]);
  });

  const failures: { fault: Parameters<KubernetesEmulator["nextPods"]>[0]; expected: RegExp; retryable: boolean }[] = [
    { fault: { kind: "image-pull" }, expected: /its image could not be pulled \((ErrImagePull|ImagePullBackOff)/, retryable: false },
    { fault: { kind: "config-error", message: 'secret "missing" not found' }, expected: /could not be configured \(CreateContainerConfigError: secret "missing" not found/, retryable: false },
    { fault: { kind: "unschedulable" }, expected: /cannot be scheduled: .*unschedulableGrace/, retryable: true },
    { fault: { kind: "crash", exitCode: 3 }, expected: /runner pod flame-[a-z0-9-]+'s container ended with exit code 3/, retryable: true },
  ];
  for (const { fault, expected, retryable } of failures) {
    it(`a pod that hits ${fault.kind} fails its boot at once with what happened and leaves no pod or Secret; the pool retries only what may pass`, async () => {
      emulator.nextPods(fault);
      const boots: { ok: boolean; error?: Error }[] = [];
      const { pool, add } = makePool({
        name: `k8s-${fault.kind}`,
        max: 1,
        backend: backend({ unschedulableGrace: 200 }),
        bootTimeout: 60_000,
        onGrowEnd: (result) => boots.push(result),
      });
      pools.push(pool);
      const outcome = await add(1, 1).catch((error: unknown) => error);
      const first = boots[0]!;
      expect(first.ok).toBe(false);
      expect(first.error).toBeInstanceOf(BootError);
      expect(first.error!.message).toMatch(expected);
      expect((first.error as BootError).retryable).toBe(retryable);
      // Retryable: the next boot (a healthy pod) serves the call. Not retryable: the call fails with it.
      if (retryable) expect(outcome).toBe(2);
      else expect(outcome).toBe(first.error);
      const failedPod = /runner pod (flame-[a-z0-9-]+)/.exec(first.error!.message)?.[1];
      expect(failedPod).toBeDefined();
      await waitFor(() => !runnerPods().some((pod) => pod.metadata.name === failedPod), "the failed runner's pod to be deleted");
      expect(runnerSecrets().filter((secret) => secret.metadata.name.startsWith(failedPod!))).toEqual([]);
    });
  }

  it("a boot that times out (a pod never scheduled in time) deletes its pod and Secret", async () => {
    emulator.nextPods({ kind: "slow-scheduling", delay: 10_000 });
    const { pool, add } = makePool({ name: "k8s-timeout", max: 1, backend: backend(), bootTimeout: 800 });
    pools.push(pool);
    const call = add(1, 1).catch((error: unknown) => error);
    await waitFor(() => runnerPods().length === 1, "the runner's pod");
    const pod = runnerPods()[0].metadata.name;
    const failure = await call;
    expect((failure as Error).message).toMatch(/within bootTimeout \(800 ms\).*have not connected back/);
    await waitFor(() => !runnerPods().some((candidate) => candidate.metadata.name === pod) && !runnerSecrets().some((secret) => secret.metadata.name.startsWith(pod)), "the timed-out runner's pod and Secret to be deleted");
  });

  it("an evicted runner fails its call as a runner exit, and the pool boots another", async () => {
    const { pool, sleep, add } = makePool({ name: "k8s-evict", max: 1, backend: backend() });
    pools.push(pool);
    const call = sleep(15_000).catch((error: unknown) => error);
    await waitFor(() => pool.stats().inFlight === 1, "the call to run on its runner");
    emulator.evictPod(runnerPods()[0].metadata.name, NAMESPACE, "The node was low on resource: memory.");
    expect(((await call) as Error).message).toMatch(/exited before the call finished: .*was evicted: The node was low on resource: memory\./);
    // The next boot starts while the watch of the last one is winding down: it must still hear of its pod.
    await expect(add(2, 2)).resolves.toBe(4);
  });

  it("retries 429 (after its Retry-After), 409 and 5xx from the API, and fails at once on 403 naming the missing verb", async () => {
    emulator.failNext("createSecret", { status: 429, retryAfter: 0, times: 2 });
    emulator.failNext("createPod", { status: 503, times: 1 });
    emulator.failNext("createPod", { status: 409, times: 1 });
    emulator.failNext("deletePod", { status: 500, times: 1 });
    const { pool, add } = makePool({ name: "k8s-retry", max: 1, backend: backend(), idleShutdownAfter: 100 });
    pools.push(pool);
    await expect(add(3, 4)).resolves.toBe(7);
    await waitFor(() => runnerPods().length === 0, "the idle runner's pod to be deleted through the 500");

    emulator.failNext("createPod", { status: 403, message: 'pods is forbidden: User "system:serviceaccount:jobs:flame-parent" cannot create resource "pods"' });
    const refused = makePool({ name: "k8s-forbidden", max: 1, backend: backend() });
    pools.push(refused.pool);
    const forbidden = await refused.add(1, 1).catch((error: unknown) => error);
    expect((forbidden as Error).message).toMatch(/forbidden \(HTTP 403\).*needs verb "create" on resource "pods"/);
    expect((forbidden as BootError).retryable).toBe(false);

    emulator.failNext("createSecret", { status: 401 });
    const unauthorized = await refused.add(1, 1).catch((error: unknown) => error);
    expect((unauthorized as Error).message).toMatch(/rejected the credentials from the kubeconfig .* \(HTTP 401\)/);
    expect((unauthorized as BootError).cause).toMatchObject({ code: "FLAME_KUBERNETES_UNAUTHORIZED", retryable: false });
    expect(JSON.stringify(unauthorized)).not.toContain(emulator.token);
  });

  it("keeps following pods through dropped watches and a 410, with no boot lost", async () => {
    const { pool, sleep } = makePool({ name: "k8s-watch", max: 2, maxConcurrency: 1, backend: backend() });
    pools.push(pool);
    emulator.nextPods({ kind: "slow-scheduling", delay: 400 }, { kind: "slow-scheduling", delay: 400 });
    const calls = Promise.all([sleep(50), sleep(50)]);
    await waitFor(() => emulator.openWatches() > 0 && runnerPods().length === 2, "the watch and both pods");
    emulator.dropWatches();
    emulator.compact();
    const done = await calls;
    expect(done).toHaveLength(2);
    expect(emulator.requests().filter((request) => request.verb === "list" && request.resource === "pods").length).toBeGreaterThanOrEqual(2);
  });

  it("refuses a runner's token from any address but its pod's, so a thief who read the Secret gets nothing", async () => {
    const gate = join(scratch, "go");
    const { lines, log } = recordingLog();
    // The runner container waits for the gate, so the thief certainly comes first.
    const command = ["/bin/sh", "-c", `while [ ! -e "${gate}" ]; do sleep 0.02; done; exec "$@"`, "runner", ...RUNNER_COMMAND];
    const { pool, add } = makePool({ name: "k8s-theft", max: 1, backend: backend({ command }), log });
    pools.push(pool);
    const sum = add(20, 22);
    await waitFor(() => runnerSecrets().length === 1 && runnerPods()[0]?.status?.podIP === "127.0.0.1", "the runner's Secret and its pod on a node");
    const stolen = decodeRunnerEnv(Buffer.from(runnerSecrets()[0].data.FLAME_PARENT, "base64").toString());
    const received: Buffer[] = [];
    const thief = new WebSocket(stolen.parentUrl, {
      headers: { authorization: `Bearer ${stolen.token}`, "x-flame-runner": stolen.runnerId },
      localAddress: "127.0.0.2",
      // A thief does not care whom it talks to.
      rejectUnauthorized: false,
    });
    thief.on("message", (data: Buffer) => received.push(data));
    await new Promise<void>((resolve) => {
      thief.once("unexpected-response", () => resolve());
      thief.once("close", () => resolve());
      thief.once("error", () => resolve());
    });
    thief.terminate();
    await writeFile(gate, "");
    await expect(sum).resolves.toBe(42);
    expect(received).toEqual([]);
    expect(lines.some((line) => line.startsWith("warn possible token theft") && line.includes("127.0.0.2"))).toBe(true);
    expect(lines.join("\n")).not.toContain(stolen.token);
    expect(existsSync(gate)).toBe(true);
  });

  it("checkPermissions names the RBAC verbs the parent lacks", async () => {
    const limited = await startTestKubernetesEmulator({
      namespace: NAMESPACE,
      rules: [
        { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch", "create", "delete"] },
        { apiGroups: [""], resources: ["secrets"], verbs: ["create"] },
        { apiGroups: ["authorization.k8s.io"], resources: ["selfsubjectaccessreviews"], verbs: ["create"] },
      ],
    });
    try {
      limited.addExternalPod({ name: PARENT_POD, namespace: NAMESPACE, image: IMAGE });
      const failure = await backend({ kubeconfig: await limited.writeKubeconfig() }).checkPermissions().catch((error: unknown) => error);
      expect((failure as Error).message).toMatch(/may not list secrets, patch secrets, delete secrets in namespace "jobs"/);
    } finally {
      await limited.close();
    }
  });
});
