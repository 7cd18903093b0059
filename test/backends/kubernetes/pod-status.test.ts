import { describe, expect, it } from "vitest";
import { podVerdict } from "../../../src/backends/kubernetes/pod-status.js";

const waiting = (reason: string, message?: string) => ({
  metadata: { name: "flame-r-1" },
  status: { phase: "Pending", podIP: "10.0.0.7", containerStatuses: [{ name: "runner", state: { waiting: { reason, ...(message ? { message } : {}) } } }] },
});

describe("podVerdict", () => {
  it("is pending until the pod has an IP, then placed at it", () => {
    expect(podVerdict({ metadata: { name: "p" }, status: { phase: "Pending" } })).toEqual({ kind: "pending" });
    expect(podVerdict({ status: { phase: "Pending", podIP: "10.0.0.7", containerStatuses: [{ state: { waiting: { reason: "ContainerCreating" } } }] } })).toEqual({
      kind: "placed",
      podIP: "10.0.0.7",
    });
  });

  it("fails at once, not retryable, on the waiting reasons the kubelet would retry forever", () => {
    for (const reason of ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"]) {
      const verdict = podVerdict(waiting(reason, 'Back-off pulling image "nope"'));
      expect(verdict).toMatchObject({ kind: "failed", retryable: false, code: "FLAME_KUBERNETES_INVALID_CONFIGURATION" });
      expect(verdict.kind === "failed" && verdict.message).toContain(reason);
    }
  });

  it("says how a container ended, and that a pod was evicted", () => {
    const crashed = podVerdict({
      metadata: { name: "flame-r-1" },
      status: { phase: "Failed", containerStatuses: [{ state: { terminated: { exitCode: 3, reason: "Error" } } }] },
    });
    expect(crashed).toMatchObject({ kind: "failed", retryable: true });
    expect(crashed.kind === "failed" && crashed.message).toContain("exit code 3 (Error)");
    const evicted = podVerdict({ metadata: { name: "flame-r-1" }, status: { phase: "Failed", reason: "Evicted", message: "The node was low on resource: memory." } });
    expect(evicted.kind === "failed" && evicted.message).toBe("runner pod flame-r-1 was evicted: The node was low on resource: memory.");
  });

  it("tells unschedulable from pending", () => {
    const verdict = podVerdict({
      metadata: { name: "flame-r-1" },
      status: { phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/3 nodes are available: 3 Insufficient nvidia.com/gpu." }] },
    });
    expect(verdict).toEqual({ kind: "unschedulable", message: "runner pod flame-r-1 cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu." });
  });
});
