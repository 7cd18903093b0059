import { describe, expect, it } from "vitest";
import { labelValue, podName, runnerPod, runnerSecret, secretName, type ParentPod } from "../../../src/backends/kubernetes/manifests.js";
import { resolveKubernetesOptions } from "../../../src/backends/kubernetes/options.js";
import type { ProvisionRequest } from "../../../src/backends/backend.js";
import { InvalidOptionError } from "../../../src/errors.js";

const TOKEN_ENV = JSON.stringify({ parentUrl: "wss://10.0.0.9:3526", runnerId: "thumbs-1-abc", token: "the-one-time-token" });

function request(overrides: Partial<ProvisionRequest> = {}): ProvisionRequest {
  return {
    runnerId: "thumbs-1-abc",
    pool: "thumbs",
    parentId: "42-lx3-9zz",
    env: { FLAME_PARENT: TOKEN_ENV },
    entry: "/app/dist/server.js",
    deadline: Date.now() + 1_000,
    signal: new AbortController().signal,
    log: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    ...overrides,
  };
}

const parent: ParentPod = { name: "web-7d9", uid: "uid-parent", image: "registry.example.com/app:v3", imagePullPolicy: "IfNotPresent", imagePullSecrets: [{ name: "regcred" }] };

describe("runner pod and Secret manifests", () => {
  it("keep the one-time token out of the pod spec: FLAME_PARENT comes from the runner's own Secret", () => {
    const options = resolveKubernetesOptions({}, {});
    const pod = runnerPod(request(), parent, { ...options, image: parent.image! });
    expect(JSON.stringify(pod)).not.toContain("the-one-time-token");
    const env = (pod.spec as { containers: { env: { name: string; valueFrom?: unknown; value?: string }[] }[] }).containers[0]!.env;
    expect(env.find((variable) => variable.name === "FLAME_PARENT")).toEqual({
      name: "FLAME_PARENT",
      valueFrom: { secretKeyRef: { name: secretName("thumbs-1-abc"), key: "FLAME_PARENT" } },
    });
    expect(env.find((variable) => variable.name === "FLAME_ENTRY")?.value).toBe("/app/dist/server.js");
    const secret = runnerSecret(request(), parent, options);
    expect(Buffer.from((secret.data as Record<string, string>).FLAME_PARENT!, "base64").toString()).toBe(TOKEN_ENV);
  });

  it("run the parent's image with its pull settings, never restart, mount no API token, and are owned by the parent pod", () => {
    const options = resolveKubernetesOptions({}, {});
    const pod = runnerPod(request(), parent, { ...options, image: parent.image! }) as any;
    expect(pod.spec.restartPolicy).toBe("Never");
    expect(pod.spec.automountServiceAccountToken).toBe(false);
    expect(pod.spec.imagePullSecrets).toEqual([{ name: "regcred" }]);
    expect(pod.spec.containers[0]).toMatchObject({ image: "registry.example.com/app:v3", imagePullPolicy: "IfNotPresent" });
    expect(pod.metadata.ownerReferences).toEqual([{ apiVersion: "v1", kind: "Pod", name: "web-7d9", uid: "uid-parent" }]);
    expect(pod.metadata.labels).toMatchObject({ "app.kubernetes.io/managed-by": "flame-ts", "flame-ts.dev/pool": "thumbs", "flame-ts.dev/runner": "thumbs-1-abc" });
    expect((runnerSecret(request(), parent, options).metadata as any).ownerReferences).toEqual(pod.metadata.ownerReferences);
    const orphan = runnerPod(request(), parent, { ...resolveKubernetesOptions({ ownerReferences: false }, {}), image: "x" }) as any;
    expect(orphan.metadata.ownerReferences).toBeUndefined();
  });

  it("carry resources, scheduling and the user's overrides, with podTemplate last", () => {
    const options = resolveKubernetesOptions(
      {
        resources: { limits: { "nvidia.com/gpu": 1, memory: "8Gi" } },
        nodeSelector: { pool: "gpu" },
        tolerations: [{ key: "gpu", operator: "Exists", effect: "NoSchedule" }],
        envFrom: [{ secretRef: { name: "app-secrets" } }],
        serviceAccountName: "flame-runner",
        podTemplate: (pod) => ({ ...pod, spec: { ...(pod.spec as object), priorityClassName: "batch" } }),
      },
      {},
    );
    const pod = runnerPod(request(), undefined, { ...options, image: "img" }) as any;
    expect(pod.spec).toMatchObject({ nodeSelector: { pool: "gpu" }, serviceAccountName: "flame-runner", priorityClassName: "batch" });
    expect(pod.spec.containers[0].resources.limits["nvidia.com/gpu"]).toBe(1);
    expect(pod.spec.containers[0].envFrom).toEqual([{ secretRef: { name: "app-secrets" } }]);
  });

  it("make names and label values Kubernetes accepts from any pool name, keeping exact ids in annotations", () => {
    const long = `Thumbs_Pool:${"x".repeat(80)}-1-abc`;
    for (const id of ["thumbs-1-abc", long, "-weird-", "ünïcode-1"]) {
      expect(podName(id)).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      expect(podName(id).length).toBeLessThanOrEqual(63);
      expect(labelValue(id)).toMatch(/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/);
      expect(labelValue(id).length).toBeLessThanOrEqual(63);
    }
    expect(podName(`${long}a`)).not.toBe(podName(`${long}b`));
    const pod = runnerPod(request({ runnerId: long, pool: "Thumbs Pool" }), undefined, { ...resolveKubernetesOptions({}, {}), image: "img" }) as any;
    expect(pod.metadata.annotations["flame-ts.dev/runner"]).toBe(long);
    expect(pod.metadata.annotations["flame-ts.dev/pool"]).toBe("Thumbs Pool");
  });
});

describe("KubernetesBackend options", () => {
  it("default the listen address and parent pod from the downward API", () => {
    const options = resolveKubernetesOptions({}, { POD_IP: "10.1.2.3", POD_NAME: "web-7d9", POD_NAMESPACE: "shop" });
    expect(options.controlPlane).toMatchObject({ host: "10.1.2.3", advertisedHost: "10.1.2.3", port: 3526, tls: true, checkRunnerAddress: true });
    expect(options.parentPodName).toBe("web-7d9");
    expect(options.namespace).toBe("shop");
  });

  it("are validated with errors that name the option", () => {
    expect(() => resolveKubernetesOptions({ imagePullPolicy: "Sometimes" as never }, {})).toThrow(InvalidOptionError);
    expect(() => resolveKubernetesOptions({ namespace: "Not_A_Namespace" }, {})).toThrow(/namespace/);
    expect(() => resolveKubernetesOptions({ imagee: "x" } as never, {})).toThrow(/imagee/);
  });
});
