/**
 * The shapes of a pod's status as the kubelet writes them: conditions,
 * container statuses, timestamps, and image names as containerd reports them.
 */

import { createHash } from "node:crypto";

type Status = Record<string, any>;

/** A container's status: its state (waiting, running or terminated), readiness, image and ids. */
export function containerStatus(input: { container: Status; state: Status; ready: boolean; lastState: Status; restartCount: number; containerId: string }): Status {
  const { container, state, ready, lastState, restartCount, containerId } = input;
  const image = String(container.image ?? "");
  const present = Boolean(state.running || state.terminated);
  return {
    name: container.name,
    state,
    lastState,
    ready,
    restartCount,
    image: fullImageName(image),
    imageID: present ? `${fullImageName(image).replace(/:[^:/]+$/, "")}@sha256:${createDigest(image)}` : "",
    ...(present ? { containerID: containerId } : {}),
    started: Boolean(state.running),
  };
}

/** A pod condition as the kubelet writes it. */
export function condition(type: string, status: "True" | "False", reason?: string, message?: string): Status {
  return { type, status, lastProbeTime: null, lastTransitionTime: timestamp(), ...(reason ? { reason } : {}), ...(message ? { message } : {}) };
}

/** The API's timestamps: RFC 3339 to the second. */
export function timestamp(at = Date.now()): string {
  return new Date(at).toISOString().replace(/\.\d+Z$/, "Z");
}

/** "node:20" as containerd names it: docker.io/library/node:20. */
export function fullImageName(image: string): string {
  const withTag = /[:@][^/]*$/.test(image) ? image : `${image}:latest`;
  const first = withTag.split("/")[0]!;
  if (withTag.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost")) return withTag;
  return withTag.includes("/") ? `docker.io/${withTag}` : `docker.io/library/${withTag}`;
}

/** A stable stand-in for the image's digest (the emulator pulls nothing, so there is no real one). */
function createDigest(image: string): string {
  return createHash("sha256").update(image).digest("hex");
}

