/**
 * Real kubectl against the Kubernetes API emulator, through the kubeconfig it
 * writes (TLS with its own CA, a bearer token): discovery, tables, JSON,
 * describe (which lists events), logs, and a delete that waits on a watch.
 * Skipped when kubectl is not installed.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KubernetesEmulator } from "../../src/emulators/kubernetes/emulator.js";
import { keepProcessesAcrossTests } from "../support/no-leftover-processes.js";
import { onPath } from "../support/processes.js";
import { kubernetesRequest, nodeCommand, openWatch, podManifest, startTestKubernetesEmulator } from "../support/kubernetes.js";

const run = promisify(execFile);
const kubectlOnPath = onPath("kubectl");
// CI installs kubectl and sets this: there, a missing kubectl is a failure, not a skip.
if (process.env.FLAME_REQUIRE_KUBECTL === "1" && !kubectlOnPath) throw new Error("FLAME_REQUIRE_KUBECTL is set but kubectl is not on PATH (apt-get install kubernetes-client)");

keepProcessesAcrossTests();

describe.skipIf(!kubectlOnPath)(kubectlOnPath ? "kubectl against the emulator" : "kubectl against the emulator (skipped: kubectl is not on PATH)", () => {
  let emulator: KubernetesEmulator;
  let home: string;
  let kubeconfig: string;

  /** Runs kubectl asynchronously: the emulator serves from this very process. */
  const kubectl = async (...args: string[]) => {
    const { stdout } = await run("kubectl", ["--kubeconfig", kubeconfig, "--request-timeout=10s", ...args], {
      // A temporary HOME and cache directory: nothing is written under the real home.
      env: { PATH: process.env.PATH!, HOME: home, KUBECACHEDIR: join(home, "cache") },
      encoding: "utf8",
      timeout: 20_000,
    });
    return stdout;
  };

  beforeAll(async () => {
    emulator = await startTestKubernetesEmulator({ namespace: "flame" });
    home = await mkdtemp(join(tmpdir(), "flame-kubectl-home-"));
    kubeconfig = await emulator.writeKubeconfig(join(home, "kubeconfig"));
    const events = await openWatch(emulator, "/api/v1/namespaces/flame/pods?watch=1");
    const pod = podManifest("demo", nodeCommand(`console.log("hello kubectl"); setInterval(() => {}, 1000)`), { labels: { app: "demo" } });
    expect((await kubernetesRequest(emulator, "POST", "/api/v1/namespaces/flame/pods", pod)).status).toBe(201);
    await events.next((event) => event.object.status?.phase === "Running");
    events.close();
  });

  afterAll(async () => {
    await emulator?.close();
    if (home) await rm(home, { recursive: true, force: true });
  });

  it("lists pods as a table (the server's Table: NAME READY STATUS RESTARTS AGE)", async () => {
    const output = await kubectl("get", "pods");
    const [header, row] = output.trim().split("\n");
    expect(header!.split(/\s+/)).toEqual(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    expect(row!.split(/\s+/).slice(0, 4)).toEqual(["demo", "1/1", "Running", "0"]);
    expect((await kubectl("get", "po", "-l", "app=demo", "-o", "name")).trim()).toBe("pod/demo");
  });

  it("prints a pod as JSON, describes it and shows its log", async () => {
    const pod = JSON.parse(await kubectl("get", "pod", "demo", "-o", "json"));
    expect(pod).toMatchObject({ kind: "Pod", metadata: { name: "demo", namespace: "flame", uid: emulator.pods()[0]!.metadata.uid }, status: { phase: "Running", podIP: "127.0.0.1" } });
    const described = await kubectl("describe", "pod", "demo");
    expect(described).toMatch(/^Name:\s+demo$/m);
    expect(described).toMatch(/^Status:\s+Running$/m);
    expect(described).toMatch(/^Node:\s+emulated-node\/127\.0\.0\.1$/m);
    // Its events, as the scheduler and the kubelet record them.
    expect(described).toMatch(/Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned flame\/demo to emulated-node/);
    expect(described).toMatch(/Normal\s+Started\s+\S+\s+kubelet\s+Started container runner/);
    expect(await kubectl("logs", "demo")).toBe("hello kubectl\n");
  });

  it("deletes a pod and waits for it to be gone, as kubectl delete does", async () => {
    expect((await kubectl("delete", "pod", "demo")).trim()).toBe('pod "demo" deleted');
    expect(emulator.pods("flame")).toEqual([]);
    expect(emulator.podProcesses()[0]!.pid).toBeUndefined();
    // What the test and kubectl asked for, as verbs a Role would have to grant.
    const verbs = new Set(emulator.requests().map((request) => `${request.verb} ${request.resource}${request.subresource ? `/${request.subresource}` : ""}`));
    expect([...verbs].sort()).toEqual(["create pods", "delete pods", "get pods", "get pods/log", "list events", "list pods", "watch pods"]);
    expect(emulator.violations()).toEqual([]);
  });
});
