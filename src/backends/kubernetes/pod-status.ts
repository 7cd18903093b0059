/**
 * What a runner pod's status means for its boot: still on its way, placed
 * (it has an IP: the address its runner will dial from), or failed, and why,
 * in the words `kubectl describe` would use. The kubelet reports failures as
 * waiting reasons that it keeps retrying (image pulls, missing Secrets); for
 * a runner that must connect within its boot timeout they are final.
 */
import { ERROR_CODES, type FlameErrorCode } from "../../errors.js";

/** The parts of a Pod the backend reads. */
export interface PodObject {
  metadata?: { name?: string; uid?: string; resourceVersion?: string; deletionTimestamp?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: { containers?: { name?: string; image?: string; imagePullPolicy?: string }[]; imagePullSecrets?: { name: string }[]; nodeName?: string };
  status?: {
    phase?: string;
    reason?: string;
    message?: string;
    podIP?: string;
    conditions?: { type?: string; status?: string; reason?: string; message?: string }[];
    containerStatuses?: ContainerStatus[];
  };
}

interface ContainerStatus {
  name?: string;
  state?: {
    waiting?: { reason?: string; message?: string };
    running?: { startedAt?: string };
    terminated?: { exitCode?: number; reason?: string; message?: string; signal?: number };
  };
}

export type PodVerdict =
  | { kind: "pending" }
  /** Not placed on a node yet because none fits: a failure once it lasts past the grace window. */
  | { kind: "unschedulable"; message: string }
  | { kind: "placed"; podIP: string }
  | { kind: "failed"; message: string; retryable: boolean; code: FlameErrorCode };

/** Waiting reasons the kubelet retries forever but that a boot cannot wait out: the configuration is wrong. */
const CONFIGURATION_FAILURES: Record<string, string> = {
  ErrImagePull: "its image could not be pulled",
  ImagePullBackOff: "its image could not be pulled",
  InvalidImageName: "its image name is invalid",
  ErrImageNeverPull: 'its image is not on the node and imagePullPolicy is "Never"',
  CreateContainerConfigError: "its container could not be configured",
  CreateContainerError: "its container could not be created",
  RunContainerError: "its container could not be started",
};

/** Judges a pod for a boot. */
export function podVerdict(pod: PodObject): PodVerdict {
  const status = pod.status ?? {};
  if (status.phase === "Failed" || status.phase === "Succeeded") return { kind: "failed", ...ended(pod), retryable: true, code: ERROR_CODES.FLAME_KUBERNETES_FAILED };
  for (const container of status.containerStatuses ?? []) {
    const waiting = container.state?.waiting;
    const explanation = waiting?.reason ? CONFIGURATION_FAILURES[waiting.reason] : undefined;
    if (explanation) {
      return {
        kind: "failed",
        message: `runner pod ${pod.metadata?.name}: ${explanation} (${waiting!.reason}${waiting!.message ? `: ${waiting!.message}` : ""})`,
        retryable: false,
        code: ERROR_CODES.FLAME_KUBERNETES_INVALID_CONFIGURATION,
      };
    }
    const terminated = container.state?.terminated;
    if (terminated) return { kind: "failed", message: terminatedMessage(pod, terminated), retryable: true, code: ERROR_CODES.FLAME_KUBERNETES_FAILED };
  }
  if (pod.metadata?.deletionTimestamp) {
    return { kind: "failed", message: `runner pod ${pod.metadata.name} is being deleted (by someone other than its pool)`, retryable: true, code: ERROR_CODES.FLAME_KUBERNETES_FAILED };
  }
  if (status.podIP) return { kind: "placed", podIP: status.podIP };
  const scheduled = status.conditions?.find((condition) => condition.type === "PodScheduled");
  if (scheduled?.status === "False" && scheduled.reason === "Unschedulable") {
    return { kind: "unschedulable", message: `runner pod ${pod.metadata?.name} cannot be scheduled: ${scheduled.message ?? "no node fits it"}` };
  }
  return { kind: "pending" };
}

/** Why a pod that ran has ended: eviction, or its container's exit. */
function ended(pod: PodObject): { message: string } {
  const status = pod.status ?? {};
  const name = pod.metadata?.name;
  if (status.reason === "Evicted") return { message: `runner pod ${name} was evicted: ${status.message ?? "no reason given"}` };
  const terminated = status.containerStatuses?.map((container) => container.state?.terminated).find(Boolean);
  if (terminated) return { message: terminatedMessage(pod, terminated) };
  return { message: `runner pod ${name} ended (phase ${status.phase}${status.reason ? `, ${status.reason}` : ""}${status.message ? `: ${status.message}` : ""})` };
}

function terminatedMessage(pod: PodObject, terminated: NonNullable<NonNullable<ContainerStatus["state"]>["terminated"]>): string {
  const how = terminated.signal ? `signal ${terminated.signal}` : `exit code ${terminated.exitCode ?? "unknown"}`;
  const why = [terminated.reason, terminated.message].filter(Boolean).join(": ");
  return `runner pod ${pod.metadata?.name}'s container ended with ${how}${why ? ` (${why})` : ""}`;
}
