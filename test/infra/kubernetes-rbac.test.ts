/**
 * infra/kubernetes: the manifests parse (kustomize, through the real kubectl
 * where it is installed), and the parent's Role is exactly what
 * KubernetesBackend needs. An emulator that enforces that Role runs the
 * backend through every code path that calls the API (permission check,
 * parent pod lookup, Secret and pod creation, the Secret's new owner, the
 * watch, list, terminate, reap); every request is recorded. No request may be
 * refused, and the set of (verb, resource) the backend used must equal the
 * Role's, so the Role grants nothing unused and lacks nothing used.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { KubernetesBackend, KUBERNETES_RBAC } from "../../src/backends/kubernetes.js";
import type { KubernetesEmulator } from "../../src/emulators/kubernetes/emulator.js";
import type { PolicyRule } from "../../src/emulators/kubernetes/rbac.js";
import { makePool } from "../fixtures/app.js";
import { runnerCommand } from "../support/fly.js";
import { startTestKubernetesEmulator } from "../support/kubernetes.js";
import { onPath, waitFor } from "../support/processes.js";

const INFRA = fileURLToPath(new URL("../../infra/kubernetes/", import.meta.url));

function manifests(file: string): any[] {
  return parseAllDocuments(readFileSync(`${INFRA}${file}`, "utf8")).map((document) => document.toJSON());
}

const role = manifests("rbac.yaml").find((object) => object.kind === "Role");
const roleRules = role.rules as PolicyRule[];
/** Every authenticated user may ask what it may do (system:basic-user); the Role need not grant it. */
const SELF_REVIEW: PolicyRule = { apiGroups: ["authorization.k8s.io"], resources: ["selfsubjectaccessreviews"], verbs: ["create"] };

function granted(rules: PolicyRule[]): Set<string> {
  return new Set(rules.flatMap((rule) => rule.resources.flatMap((resource) => rule.verbs.map((verb) => `${verb} ${resource}`))));
}

describe("infra/kubernetes", () => {
  it("the parent's Role grants exactly the backend's declared requests; runners get a ServiceAccount with no rights and no token", () => {
    expect(granted(roleRules)).toEqual(new Set(KUBERNETES_RBAC.map(({ verb, resource }) => `${verb} ${resource}`)));
    expect(roleRules.every((rule) => rule.apiGroups.length === 1 && rule.apiGroups[0] === "")).toBe(true);
    const objects = manifests("rbac.yaml");
    const runnerAccount = objects.find((object) => object.kind === "ServiceAccount" && object.metadata.name === "flame-runner");
    expect(runnerAccount.automountServiceAccountToken).toBe(false);
    const bindings = objects.filter((object) => object.kind === "RoleBinding");
    expect(bindings.flatMap((binding) => binding.subjects.map((subject: any) => subject.name))).toEqual(["flame-parent"]);
  });

  it("the Deployment gives the parent its pod name, namespace and IP through the downward API, and the NetworkPolicy opens port 3526 to runner pods only", () => {
    const deployment = manifests("deployment.yaml")[0];
    const env = deployment.spec.template.spec.containers[0].env;
    const fieldOf = (name: string) => env.find((variable: any) => variable.name === name)?.valueFrom?.fieldRef?.fieldPath;
    expect([fieldOf("POD_NAME"), fieldOf("POD_NAMESPACE"), fieldOf("POD_IP")]).toEqual(["metadata.name", "metadata.namespace", "status.podIP"]);
    expect(deployment.spec.template.spec.serviceAccountName).toBe("flame-parent");
    const policy = manifests("network-policy.yaml")[0];
    const controlPlane = policy.spec.ingress.find((rule: any) => rule.ports.some((port: any) => port.port === 3526));
    expect(controlPlane.from).toEqual([{ podSelector: { matchLabels: { "app.kubernetes.io/managed-by": "flame-ts" } } }]);
    expect(policy.spec.podSelector.matchLabels).toEqual(deployment.spec.template.metadata.labels);
  });

  it.skipIf(!onPath("kubectl"))("builds with kubectl kustomize (skipped where kubectl is not installed)", () => {
    const built = spawnSync("kubectl", ["kustomize", INFRA], { encoding: "utf8" });
    expect(built.stderr).toBe("");
    const kinds = parseAllDocuments(built.stdout).map((document) => document.toJSON().kind);
    expect(kinds.sort()).toEqual(["Deployment", "Namespace", "NetworkPolicy", "Role", "RoleBinding", "ServiceAccount", "ServiceAccount"].sort());
  });
});

describe("the Role, enforced by the emulator, in a recorded run of every backend request", () => {
  let emulator: KubernetesEmulator;
  beforeAll(async () => {
    emulator = await startTestKubernetesEmulator({ namespace: "image-service", serviceAccount: "flame-parent", rules: [...roleRules, SELF_REVIEW] });
  });
  afterAll(() => emulator?.close());

  it("needs every rule and nothing else", async () => {
    emulator.addExternalPod({ name: "image-service-0", namespace: "image-service", image: "registry.example.com/image-service:v1" });
    const backend = new KubernetesBackend({
      kubeconfig: await emulator.writeKubeconfig(),
      parentPod: { name: "image-service-0" },
      command: runnerCommand(),
      controlPlane: { host: "127.0.0.1", port: 0, advertisedHost: "127.0.0.1" },
    });
    await backend.checkPermissions();
    const { pool, add } = makePool({ name: "rbac", max: 2, backend, idleShutdownAfter: 100 });
    await pool.start();
    await expect(add(1, 2)).resolves.toBe(3);
    await waitFor(async () => (await backend.list()).length === 0, "the idle runner to be deleted");
    // A runner left behind by a "crashed" parent: reap's list and terminate.
    const { pool: crashed, add: addOnCrashed } = makePool({ name: "rbac-crashed", max: 1, backend });
    await addOnCrashed(2, 2);
    const leftovers = await backend.list({ pool: "rbac-crashed" });
    expect(leftovers).toHaveLength(1);
    await Promise.all(leftovers.map((runner) => backend.terminate(runner)));
    await crashed.stop();
    await pool.stop();

    const requests = emulator.requests();
    expect(requests.filter((request) => request.status === 403)).toEqual([]);
    const used = new Set(
      requests
        .filter((request) => request.resource !== "selfsubjectaccessreviews")
        .map((request) => `${request.verb} ${request.subresource ? `${request.resource}/${request.subresource}` : request.resource}`),
    );
    expect(used).toEqual(granted(roleRules));
    expect(emulator.violations()).toEqual([]);
  });
});
