/**
 * One emulated pod's node side: what the scheduler and the kubelet would do
 * to it. It is bound to "emulated-node", its container is "created" (the
 * environment resolved from its Secrets and ConfigMaps; the image recorded,
 * never pulled) and started as a real local process running `command` +
 * `args`, and the pod's status follows that process: Pending, Running, then
 * Succeeded or Failed. Every status change is written to the store, so it is
 * a resourceVersion bump and a MODIFIED watch event, as the kubelet's status
 * updates are.
 *
 * One container per pod: the emulator refuses pods with more at create.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { expand, resolveContainerEnvironment } from "./environment.js";
import { recordPodEvent, type EventSource } from "./events.js";
import { condition, containerStatus, fullImageName, timestamp } from "./pod-status.js";
import { crashCommand, signalGroup, signalNumber } from "./process-group.js";
import type { KubernetesObject } from "./selectors.js";
import type { ObjectStore } from "./store.js";

/** The node every pod is bound to. */
export const NODE_NAME = "emulated-node";
const LOOPBACK = "127.0.0.1";
/** Bytes of a pod's output kept for its log. */
const LOG_LIMIT = 1_048_576;

/** How the next pods misbehave, one fault per pod, for tests of a backend's failure handling. */
export type PodFault =
  /** The image cannot be pulled: waiting ErrImagePull, then ImagePullBackOff, forever. */
  | { kind: "image-pull"; message?: string }
  /** The container cannot be configured: waiting CreateContainerConfigError, forever. */
  | { kind: "config-error"; message?: string }
  /** No node fits: PodScheduled False, reason Unschedulable, forever. */
  | { kind: "unschedulable"; message?: string }
  /** A process that exits at once with `exitCode` (default 1) runs instead of the container's command. */
  | { kind: "crash"; exitCode?: number }
  /** The pod runs, then is evicted `after` ms after its container started (default 0). */
  | { kind: "evict"; after?: number; message?: string }
  /** Scheduling takes `delay` ms. */
  | { kind: "slow-scheduling"; delay: number };

/** What every pod of an emulator shares. */
export interface PodHostSettings {
  store: ObjectStore;
  /** Working directory of pod processes, unless a container's workingDir exists here. */
  cwd: string;
  baseEnv: Record<string, string>;
  /** What KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT say in every pod. */
  serviceHost: string;
  servicePort: number;
  /** Ms between create and binding to the node. */
  schedulingDelay: number;
  /** Ms an image-pull fault shows ErrImagePull before ImagePullBackOff. */
  imagePullBackOffAfter: number;
  echoOutput: boolean;
}

type Status = Record<string, any>;

/** One pod's scheduling, container process and status. */
export class PodRuntime {
  /** The environment the current (or last) process got. */
  env: Record<string, string> = {};
  pid: number | undefined;
  exitCode: number | undefined;
  output = "";
  restarts = 0;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly outputListeners = new Set<(chunk: string | undefined) => void>();
  private stopWatchingReferences: (() => void) | undefined;
  /** Set once deletion or close began: nothing is started any more. */
  private stopping = false;
  /** Why the pod failed whatever its process's exit code says (eviction, deadline). */
  private failure: { reason: string; message: string } | undefined;
  private startedAt: string | undefined;
  /** The previous container's end, once it restarted: containerStatuses' lastState. */
  private lastState: Status = {};
  private lastConfigError: string | undefined;
  private readonly containerId = `containerd://${randomBytes(32).toString("hex")}`;

  constructor(
    readonly namespace: string,
    readonly name: string,
    private readonly settings: PodHostSettings,
    private readonly fault: PodFault | undefined,
  ) {}

  /** Whether the container's process is alive. */
  get running(): boolean {
    return this.child !== undefined;
  }

  /** Schedules the pod, then creates and starts its container. */
  start(): void {
    if (this.fault?.kind === "unschedulable") {
      const message = this.fault.message ?? "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";
      this.writeStatus((status) => {
        status.conditions = [
          condition("PodScheduled", "False", "Unschedulable", message),
        ];
      });
      this.event("Warning", "FailedScheduling", message, undefined, "default-scheduler");
      return;
    }
    const delay = this.fault?.kind === "slow-scheduling" ? this.fault.delay : this.settings.schedulingDelay;
    this.later(delay, () => this.bind());
  }

  /** Stops the container as a graceful delete does: SIGTERM to its process group, SIGKILL after `graceMs`. Resolves once no process is left. */
  terminate(graceMs: number): Promise<void> {
    this.stopping = true;
    this.willRestart = false;
    this.cancelPending();
    const child = this.child;
    if (!child) {
      for (const listener of [...this.outputListeners]) listener(undefined);
      return Promise.resolve();
    }
    const pod = this.podObject();
    if (pod) {
      const name = String(this.container(pod).name);
      this.event("Normal", "Killing", `Stopping container ${name}`, name);
    }
    signalGroup(child, graceMs === 0 ? "SIGKILL" : "SIGTERM");
    if (graceMs > 0) this.later(graceMs, () => signalGroup(child, "SIGKILL"));
    return this.exited;
  }

  /** Evicts the pod: its container is killed and it fails with reason Evicted. */
  evict(message = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. "): void {
    this.fail("Evicted", message, [condition("DisruptionTarget", "True", "TerminationByKubelet", "The node was low on resource: memory.")]);
  }

  /** Kills the process at once (the emulator is closing). */
  async kill(): Promise<void> {
    await this.terminate(0);
  }

  /** The container's captured stdout and stderr. */
  log(): string {
    return this.output;
  }

  /** Calls `listener` with each chunk of output, and with undefined once the container is done for good. Returns the unsubscribe function. */
  followOutput(listener: (chunk: string | undefined) => void): () => void {
    this.outputListeners.add(listener);
    return () => this.outputListeners.delete(listener);
  }

  /** Whether the container will produce no more output. */
  get finished(): boolean {
    return !this.child && (this.stopping || this.exitCode !== undefined) && !this.willRestart;
  }

  private willRestart = false;

  /** The scheduler's binding, then the kubelet's first status. */
  private bind(): void {
    if (this.stopping) return;
    const now = timestamp();
    const pod = this.update((object) => {
      (object.spec as Status).nodeName = NODE_NAME;
      object.status = {
        ...(object.status as Status),
        conditions: [condition("PodScheduled", "True")],
      };
    });
    if (!pod) return;
    const container = this.container(pod);
    this.event("Normal", "Scheduled", `Successfully assigned ${this.namespace}/${this.name} to ${NODE_NAME}`, undefined, "default-scheduler");
    this.writeStatus((status) => {
      status.conditions = [
        condition("PodReadyToStartContainers", "False"),
        condition("Initialized", "True"),
        condition("Ready", "False", "ContainersNotReady", `containers with unready status: [${container.name}]`),
        condition("ContainersReady", "False", "ContainersNotReady", `containers with unready status: [${container.name}]`),
        condition("PodScheduled", "True"),
      ];
      status.hostIP = LOOPBACK;
      status.hostIPs = [{ ip: LOOPBACK }];
      status.podIP = LOOPBACK;
      status.podIPs = [{ ip: LOOPBACK }];
      status.startTime = now;
      status.containerStatuses = [this.containerStatus(container, { waiting: { reason: "ContainerCreating" } }, false)];
    });
    const deadline = (pod.spec as Status).activeDeadlineSeconds as number | undefined;
    if (deadline !== undefined) this.later(deadline * 1000, () => this.fail("DeadlineExceeded", "Pod was active on the node longer than the specified deadline"));
    this.later(0, () => this.createContainer());
  }

  private createContainer(): void {
    if (this.stopping) return;
    const pod = this.settings.store.get("pods", this.namespace, this.name);
    if (!pod) return;
    const container = this.container(pod);
    if (this.fault?.kind === "image-pull") {
      const image = String(container.image ?? "");
      const message = this.fault.message ?? `failed to pull and unpack image "${fullImageName(image)}": failed to resolve reference "${fullImageName(image)}": pull access denied, repository does not exist or may require authorization`;
      this.event("Normal", "Pulling", `Pulling image "${image}"`, container.name);
      this.event("Warning", "Failed", `Failed to pull image "${image}": ${message}`, container.name);
      this.event("Warning", "Failed", "Error: ErrImagePull", container.name);
      this.setWaiting(container, "ErrImagePull", message);
      this.later(this.settings.imagePullBackOffAfter, () => {
        this.event("Normal", "BackOff", `Back-off pulling image "${image}"`, container.name);
        this.event("Warning", "Failed", "Error: ImagePullBackOff", container.name);
        this.setWaiting(container, "ImagePullBackOff", `Back-off pulling image "${image}"`);
      });
      return;
    }
    if (this.fault?.kind === "config-error") {
      const message = this.fault.message ?? `secret "flame-emulated-missing" not found`;
      this.event("Warning", "Failed", `Error: ${message}`, container.name);
      this.setWaiting(container, "CreateContainerConfigError", message);
      return;
    }
    const resolved = resolveContainerEnvironment(pod, container, (resource, namespace, name) => this.settings.store.get(resource, namespace, name));
    if (!resolved.ok) {
      if (resolved.message !== this.lastConfigError) {
        this.event("Warning", "Failed", `Error: ${resolved.message}`, container.name);
        this.setWaiting(container, "CreateContainerConfigError", resolved.message);
      }
      this.lastConfigError = resolved.message;
      // The kubelet retries with back-off; here a change to a Secret or ConfigMap of the namespace is the cue.
      this.stopWatchingReferences ??= this.settings.store.subscribe((event) => {
        if ((event.resource === "secrets" || event.resource === "configmaps") && event.object.metadata.namespace === this.namespace) this.later(0, () => this.createContainer());
      });
      return;
    }
    this.stopWatchingReferences?.();
    this.stopWatchingReferences = undefined;
    const env: Record<string, string> = {
      ...this.settings.baseEnv,
      HOSTNAME: this.name,
      KUBERNETES_SERVICE_HOST: this.settings.serviceHost,
      KUBERNETES_SERVICE_PORT: String(this.settings.servicePort),
      KUBERNETES_SERVICE_PORT_HTTPS: String(this.settings.servicePort),
      KUBERNETES_PORT: `tcp://${this.settings.serviceHost}:${this.settings.servicePort}`,
      ...resolved.env,
    };
    const argv = [...((container.command ?? []) as string[]), ...((container.args ?? []) as string[])].map((part) => expand(part, env));
    const command = this.fault?.kind === "crash" ? crashCommand(this.fault.exitCode ?? 1) : argv;
    this.event("Normal", "Pulled", `Container image "${String(container.image ?? "")}" already present on machine`, container.name);
    this.spawnContainer(container, command, env);
  }

  private spawnContainer(container: Status, argv: string[], env: Record<string, string>): void {
    this.env = env;
    if (argv.length === 0) {
      this.startFailed(container, "the emulator pulls no image, so a container needs a command: none given");
      return;
    }
    const workingDir = typeof container.workingDir === "string" && existsSync(container.workingDir) ? container.workingDir : this.settings.cwd;
    let child: ChildProcess;
    try {
      // Its own process group, so a delete's signal reaches everything the container started, as a cgroup kill does.
      child = spawn(argv[0]!, argv.slice(1), { cwd: workingDir, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    } catch (error) {
      this.startFailed(container, (error as Error).message);
      return;
    }
    this.exited = new Promise((resolve) => {
      child.once("error", (error) => {
        if (child.pid !== undefined) return;
        this.child = undefined;
        this.startFailed(container, `exec: "${argv[0]}": ${error.message}`);
        resolve();
      });
      child.once("exit", (code, signal) => {
        // The container's end takes every process it started with it.
        signalGroup(child, "SIGKILL");
        this.child = undefined;
        this.pid = undefined;
        this.onExit(container, code ?? 128 + signalNumber(signal));
        resolve();
      });
    });
    if (child.pid === undefined) return;
    this.child = child;
    this.pid = child.pid;
    for (const stream of [child.stdout!, child.stderr!]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => this.appendOutput(chunk));
      stream.on("error", () => undefined);
    }
    this.startedAt = timestamp();
    this.event("Normal", "Created", `Created container: ${container.name}`, container.name);
    this.event("Normal", "Started", `Started container ${container.name}`, container.name);
    this.writeStatus((status) => {
      status.phase = "Running";
      status.conditions = [
        condition("PodReadyToStartContainers", "True"),
        condition("Initialized", "True"),
        condition("Ready", "True"),
        condition("ContainersReady", "True"),
        condition("PodScheduled", "True"),
      ];
      status.containerStatuses = [this.containerStatus(container, { running: { startedAt: this.startedAt } }, true)];
    });
    if (this.fault?.kind === "evict") {
      const fault = this.fault;
      this.later(fault.after ?? 0, () => this.evict(fault.message));
    }
  }

  private onExit(container: Status, exitCode: number): void {
    this.exitCode = exitCode;
    const finishedAt = timestamp();
    const terminated = {
      exitCode,
      reason: exitCode === 0 ? "Completed" : "Error",
      startedAt: this.startedAt ?? finishedAt,
      finishedAt,
      containerID: this.containerId,
    };
    const policy = String((this.settings.store.get("pods", this.namespace, this.name)?.spec as Status | undefined)?.restartPolicy ?? "Always");
    this.willRestart = !this.stopping && !this.failure && (policy === "Always" || (policy === "OnFailure" && exitCode !== 0));
    if (this.willRestart) {
      this.restarts += 1;
      this.lastState = { terminated };
      this.writeStatus((status) => {
        status.containerStatuses = [
          this.containerStatus(container, { waiting: { reason: "CrashLoopBackOff", message: `back-off 10s restarting failed container=${container.name} pod=${this.name}_${this.namespace}(${this.uid()})` } }, false),
        ];
      });
      this.later(100, () => {
        this.willRestart = false;
        this.createContainer();
      });
      return;
    }
    this.cancelPending();
    const failed = this.failure !== undefined || exitCode !== 0;
    const reason = failed ? "PodFailed" : "PodCompleted";
    this.writeStatus((status) => {
      status.phase = failed ? "Failed" : "Succeeded";
      if (this.failure) {
        status.reason = this.failure.reason;
        status.message = this.failure.message;
      }
      status.conditions = [
        ...((status.conditions ?? []) as Status[]).filter((entry) => entry.type === "DisruptionTarget"),
        condition("PodReadyToStartContainers", "False"),
        condition("Initialized", "True"),
        condition("Ready", "False", reason),
        condition("ContainersReady", "False", reason),
        condition("PodScheduled", "True"),
      ];
      status.containerStatuses = [{ ...this.containerStatus(container, { terminated }, false), started: false }];
    });
    for (const listener of [...this.outputListeners]) listener(undefined);
  }

  /** Fails the pod for `reason` (its process is killed; it does not restart). */
  private fail(reason: string, message: string, extraConditions: Status[] = []): void {
    if (this.failure || this.stopping) return;
    this.failure = { reason, message };
    this.event("Warning", reason, message);
    if (extraConditions.length > 0) this.writeStatus((status) => void (status.conditions = [...extraConditions, ...((status.conditions ?? []) as Status[])]));
    if (this.child) {
      signalGroup(this.child, "SIGKILL");
      return;
    }
    // Not started yet: it fails where it stands.
    this.cancelPending();
    this.writeStatus((status) => {
      status.phase = "Failed";
      status.reason = reason;
      status.message = message;
    });
    for (const listener of [...this.outputListeners]) listener(undefined);
  }

  private startFailed(container: Status, message: string): void {
    this.appendOutput(`emulator: could not start the container: ${message}\n`);
    const now = timestamp();
    this.exitCode = 128;
    this.writeStatus((status) => {
      status.phase = "Failed";
      status.containerStatuses = [
        this.containerStatus(container, { terminated: { exitCode: 128, reason: "StartError", message, startedAt: now, finishedAt: now, containerID: this.containerId } }, false),
      ];
    });
    for (const listener of [...this.outputListeners]) listener(undefined);
  }

  private setWaiting(container: Status, reason: string, message: string): void {
    if (this.stopping) return;
    this.writeStatus((status) => {
      status.containerStatuses = [this.containerStatus(container, { waiting: { reason, message } }, false)];
    });
  }

  private containerStatus(container: Status, state: Status, ready: boolean): Status {
    return containerStatus({ container, state, ready, lastState: this.lastState, restartCount: this.restarts, containerId: this.containerId });
  }

  private podObject(): KubernetesObject | undefined {
    return this.settings.store.get("pods", this.namespace, this.name);
  }

  private event(type: "Normal" | "Warning", reason: string, message: string, container?: string, source: EventSource = "kubelet"): void {
    const pod = this.podObject();
    if (pod) recordPodEvent(this.settings.store, pod, type, reason, message, { source, node: NODE_NAME, ...(container ? { container } : {}) });
  }

  private container(pod: KubernetesObject): Status {
    return ((pod.spec as Status).containers as Status[])[0]!;
  }

  private uid(): string {
    return this.settings.store.get("pods", this.namespace, this.name)?.metadata.uid ?? "";
  }

  private update(mutate: (pod: KubernetesObject) => void): KubernetesObject | undefined {
    if (!this.settings.store.get("pods", this.namespace, this.name)) return undefined;
    return this.settings.store.update("pods", this.namespace, this.name, mutate);
  }

  private writeStatus(mutate: (status: Status) => void): void {
    this.update((pod) => {
      pod.status ??= {};
      mutate(pod.status as Status);
    });
  }

  private appendOutput(text: string): void {
    this.output = (this.output + text).slice(-LOG_LIMIT);
    for (const listener of [...this.outputListeners]) listener(text);
    if (this.settings.echoOutput) {
      for (const line of text.split("\n")) if (line) process.stderr.write(`[k8s-emulator ${this.namespace}/${this.name}] ${line}\n`);
    }
  }

  private later(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      try {
        run();
      } catch (error) {
        // A pod the emulator cannot run (say, a malformed spec with validate: false) must not take the emulator down.
        this.appendOutput(`emulator: ${(error as Error).message}\n`);
      }
    }, ms);
    this.timers.add(timer);
  }

  private cancelPending(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.stopWatchingReferences?.();
    this.stopWatchingReferences = undefined;
  }
}
