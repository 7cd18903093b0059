/**
 * `flame-ts doctor --backend kubernetes` and `reap --backend kubernetes`, run
 * as a user runs them, against the Kubernetes emulator: the RBAC check by
 * SelfSubjectAccessReview, the listen address, and the runners a crashed
 * parent left behind.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KubernetesBackend } from "../../src/backends/kubernetes.js";
import type { KubernetesEmulator } from "../../src/emulators/kubernetes/emulator.js";
import { fromCopy } from "../support/backends.js";
import { startTestKubernetesEmulator } from "../support/kubernetes.js";
import { keepProcessesAcrossTests } from "../support/no-leftover-processes.js";
import { waitFor } from "../support/processes.js";

keepProcessesAcrossTests();

const cli = fileURLToPath(new URL("../../src/cli.ts", import.meta.url));
const NAMESPACE = "batch";

async function flameTs(args: string[], env: Record<string, string>) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...fromCopy(cli), ...args], { env: { ...process.env, ...env }, timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe("flame-ts doctor and reap on the Kubernetes backend", () => {
  let emulator: KubernetesEmulator;
  let limited: KubernetesEmulator;
  let env: Record<string, string>;

  beforeAll(async () => {
    emulator = await startTestKubernetesEmulator({ namespace: NAMESPACE });
    emulator.addExternalPod({ name: "parent-0", namespace: NAMESPACE, image: "registry.example.com/app:3" });
    env = { KUBECONFIG: await emulator.writeKubeconfig(), POD_NAME: "parent-0", POD_NAMESPACE: NAMESPACE, POD_IP: "127.0.0.1" };
    // The Role of infra/kubernetes without "patch secrets".
    limited = await startTestKubernetesEmulator({
      namespace: NAMESPACE,
      rules: [
        { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch", "create", "delete"] },
        { apiGroups: [""], resources: ["secrets"], verbs: ["list", "create", "delete"] },
      ],
    });
    limited.addExternalPod({ name: "parent-0", namespace: NAMESPACE, image: "registry.example.com/app:3" });
  });
  afterAll(async () => {
    await emulator?.close();
    await limited?.close();
  });

  it("doctor passes with the Role the backend needs, and names the verb that is missing otherwise", async () => {
    const good = await flameTs(["doctor", "--backend", "kubernetes"], env);
    expect(good.stdout).toMatch(/ok {3}credentials and permissions/);
    expect(good.stdout).toMatch(/ok {3}runner URL: wss:\/\/127\.0\.0\.1:3526\/? is an address of this machine/);
    expect(good.code).toBe(0);

    const missing = await flameTs(["doctor", "--backend", "kubernetes"], { ...env, KUBECONFIG: await limited.writeKubeconfig() });
    expect(missing.code).toBe(1);
    expect(missing.stdout).toMatch(/FAIL credentials and permissions: .*may not patch secrets in namespace "batch"/);
    expect(missing.stdout + missing.stderr).not.toContain(limited.token);
  });

  it("reap lists a crashed parent's runner pods, and deletes them and their Secrets with --yes", async () => {
    // A parent that created runners and died: their pods run, never connecting.
    const provisioned = [];
    const crashed = new KubernetesBackend({ kubeconfig: env.KUBECONFIG, namespace: NAMESPACE, parentPod: false, image: "img", command: [process.execPath, "-e", "setInterval(() => {}, 1000)"] });
    for (const runnerId of ["thumbs-1-a", "thumbs-2-b"]) {
      const runner = await crashed.provision({
        runnerId,
        pool: "thumbs",
        parentId: "dead-parent",
        env: { FLAME_PARENT: "{}" },
        entry: undefined,
        deadline: Date.now() + 10_000,
        signal: new AbortController().signal,
        log: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
      });
      provisioned.push(runner);
    }
    const managed = (object: any) => object.metadata.labels?.["app.kubernetes.io/managed-by"] === "flame-ts";
    const dryRun = await flameTs(["reap", "--backend", "kubernetes", "--pool", "thumbs"], env);
    expect(dryRun.code).toBe(0);
    expect(dryRun.stdout).toMatch(/kubernetes backend, pool "thumbs": 2 runner\(s\)/);
    expect(emulator.pods(NAMESPACE).filter(managed)).toHaveLength(2);

    const reaped = await flameTs(["reap", "--backend", "kubernetes", "--pool", "thumbs", "--parent", "dead-parent", "--yes"], env);
    expect(reaped.code).toBe(0);
    await waitFor(() => emulator.pods(NAMESPACE).filter(managed).length === 0 && emulator.secrets(NAMESPACE).filter(managed).length === 0, "the orphans' pods and Secrets to be deleted");
    // This process stands in for the crashed parent: stop its watch (terminating what is gone already is no error).
    await Promise.all(provisioned.map((runner) => crashed.terminate(runner)));
  });
});
