/**
 * The parent's side of one runner: its connection, the calls in flight on it,
 * liveness, its idle countdown, and its lifecycle. The Scheduler decides when
 * a runner should drain, idle down or stop; the Runner owns the transitions
 * (each method below says which it allows) and reports back through `RunnerEvents`.
 */
import type { WebSocket } from "ws";
import type { ProvisionedRunner } from "../backends/backend.js";
import { RunnerExitedError } from "../errors.js";
import { settledWithin } from "../retry.js";
import type { Logger } from "../log.js";
import type { ShrinkReason } from "./options.js";
import { decodeRunnerMessage, encodeMessage, readMessage } from "../protocol/codec.js";
import { sendCoalesced } from "../protocol/coalesce.js";
import {
  type CancelMessage,
  type LogMessage,
  type ParentMessage,
  type ResultMessage,
  type RunnerMessage,
} from "../protocol/messages.js";

/**
 * booting: provisioned, not yet said hello. ready: takes calls.
 * draining: takes no new calls, ends when its calls are done. stopping: being terminated. exited: gone.
 */
export type RunnerState = "booting" | "ready" | "draining" | "stopping" | "exited";

export interface InFlightCall {
  callId: number;
  functionId: string;
  /** Receives the runner's answer, or RunnerExitedError. Not called once abandoned. */
  settle(result: ResultMessage | Error): void;
  /** Placed children keep the runner from idling but are otherwise calls. */
  child: boolean;
  /** The caller gave up (timeout, abort); the slot stays taken until the runner answers. */
  abandoned: boolean;
  graceTimer?: NodeJS.Timeout;
}

export interface RunnerEvents {
  /** A call finished (or was answered after being abandoned): a slot is free. */
  callFinished(runner: Runner): void;
  /** Its load, lifecycle or connection changed: routing and counts file it anew. */
  changed(runner: Runner): void;
  /** An abandoned call outlived the grace period: its work ignores its signal. */
  stuck(runner: Runner, functionId: string): void;
  /** The connection is gone, for whatever reason. Fires once. */
  exited(runner: Runner, detail: string): void;
}

/**
 * For a runner with worker threads, how much longer than abortGracePeriod a
 * cancelled call may run before the whole runner counts as stuck: the runner
 * itself replaces a thread stuck for abortGracePeriod, and its answer needs
 * time to come back. This check stays as the backstop.
 */
const THREAD_REPLACEMENT_MARGIN = 2_000;

/** How long a closed connection waits for the backend to say how the runner ended. */
const EXIT_DETAIL_WAIT = 300;

export class Runner {
  private lifecycle: RunnerState = "booting";
  private leaving: ShrinkReason | undefined;
  private backendHandle: ProvisionedRunner | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private idleSince = Date.now();

  private socket: WebSocket | undefined;
  private readonly inFlight = new Map<number, InFlightCall>();
  private heartbeat: NodeJS.Timeout | undefined;
  private missedPongs = 0;
  private idleCheckReplies = new Map<number, (shutdown: boolean) => void>();
  private nextIdleCheckId = 1;
  /** performance.now() when the pool began booting it (it is made for its boot). */
  readonly bootStartedAt = performance.now();
  private becameReadyAt: number | undefined;
  private workerThreads = 0;

  constructor(
    readonly id: string,
    private readonly events: RunnerEvents,
    private readonly log: Logger,
    private readonly abortGracePeriod: number,
  ) {}

  get state(): RunnerState {
    return this.lifecycle;
  }

  /** performance.now() when it became ready; undefined before. A call span uses it to show the boot it waited for. */
  get readyAt(): number | undefined {
    return this.becameReadyAt;
  }

  /** Why the pool took this runner out of routing or let it go, if it did; undefined for a runner that just died. */
  get leaveReason(): ShrinkReason | undefined {
    return this.leaving;
  }

  /** Worker threads running its calls (its hello said); 0: they run on its main thread. */
  get threads(): number {
    return this.workerThreads;
  }

  /** What the backend returned for it (passed back to its terminate). */
  get provisioned(): ProvisionedRunner | undefined {
    return this.backendHandle;
  }

  /** The backend accepted it. */
  markProvisioned(provisioned: ProvisionedRunner): void {
    this.backendHandle = provisioned;
  }

  /**
   * ready or draining -> draining: no new calls; its calls finish. A later
   * reason replaces an earlier one (a runner draining for resize that gets
   * stuck leaves as stuck). Returns whether it has no live call left, i.e.
   * may be retired at once.
   */
  drain(reason: ShrinkReason): boolean {
    if (this.lifecycle === "ready" || this.lifecycle === "draining") {
      this.lifecycle = "draining";
      this.leaving = reason;
      this.stopIdleCountdown();
      this.events.changed(this);
    }
    return this.liveCalls === 0;
  }

  /** draining for idle -> ready: its idle check asked to stay up. Returns whether it did. */
  resume(): boolean {
    if (this.lifecycle !== "draining" || this.leaving !== "idle") return false;
    this.lifecycle = "ready";
    this.leaving = undefined;
    this.events.changed(this);
    return true;
  }

  /** Anything but stopping or exited -> stopping, for `reason`. Returns false if it was already on its way out. */
  beginStopping(reason: ShrinkReason): boolean {
    if (this.lifecycle === "stopping" || this.lifecycle === "exited") return false;
    this.lifecycle = "stopping";
    this.leaving = reason;
    this.stopIdleCountdown();
    this.events.changed(this);
    return true;
  }

  /** (Re)starts the idle countdown of a ready runner with nothing to do; `onIdle` runs after `after` ms. */
  startIdleCountdown(after: number, onIdle: (runner: Runner) => void): void {
    this.stopIdleCountdown();
    if (this.lifecycle !== "ready" || this.load > 0) return;
    this.idleSince = Date.now();
    if (!Number.isFinite(after)) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      onIdle(this);
    }, after);
    this.idleTimer.unref();
  }

  stopIdleCountdown(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** Ms since it last had nothing to do (meaningful while idle). */
  get idleFor(): number {
    return Date.now() - this.idleSince;
  }

  /** Ready, and its connection is open (a closed one is still being explained, see connectionClosed). */
  get acceptsCalls(): boolean {
    return this.lifecycle === "ready" && this.socket !== undefined && this.socket.readyState === this.socket.OPEN;
  }

  /** Calls on this runner, including abandoned ones still running. */
  get load(): number {
    return this.inFlight.size;
  }

  /** Calls whose callers still wait for them (abandoned ones excluded). */
  get liveCalls(): number {
    let live = 0;
    for (const call of this.inFlight.values()) if (!call.abandoned) live += 1;
    return live;
  }

  /** Fails every placed child with `error` and aborts it on the runner (the pool is stopping). */
  cancelChildren(error: Error): void {
    for (const call of this.inFlight.values()) {
      if (!call.child || call.abandoned) continue;
      call.settle(error);
      this.cancelCall(call.callId, "stopped");
    }
  }

  /** Takes over the authenticated socket once the runner said hello. */
  attach(socket: WebSocket, heartbeatInterval: number): void {
    // Ended while its boot was finishing (stopped, or its token was reused): the socket goes too.
    if (this.lifecycle === "stopping" || this.lifecycle === "exited") {
      socket.terminate();
      return;
    }
    this.socket = socket;
    this.holdProcess(false);
    socket.on("message", (data: Buffer, isBinary: boolean) => this.receive(isBinary ? data : undefined));
    socket.on("close", (code, reason) => {
      // Out of routing at once; the calls it has fail once connectionClosed knows why.
      this.events.changed(this);
      void this.connectionClosed(`connection closed (${code}${reason.length ? ` ${reason.toString()}` : ""})`);
    });
    socket.on("error", (error) => this.log.debug({ err: error }, "runner socket error"));
    socket.on("pong", () => {
      this.missedPongs = 0;
    });
    this.heartbeat = setInterval(() => {
      // A runner busy with synchronous work cannot answer pings: while it has calls, their
      // timeouts (and TCP) judge it, so a long CPU-bound call is never mistaken for a dead runner.
      if (this.inFlight.size > 0) this.missedPongs = 0;
      if (this.missedPongs >= 3) {
        this.log.warn({}, "runner stopped answering pings; counting it as exited");
        socket.terminate();
        return;
      }
      this.missedPongs += 1;
      socket.ping();
    }, heartbeatInterval);
    this.heartbeat.unref();
  }

  /**
   * The runner was welcomed: it takes calls. `earlier` holds the frames that
   * came after its hello, before the socket was attached (undefined: a text
   * frame); they are read now, in order, as if they had just arrived.
   * `threads`: the worker threads its hello reported.
   */
  markReady(earlier: ReadonlyArray<Buffer | undefined> = [], threads = 0): void {
    if (this.lifecycle !== "booting") return;
    this.lifecycle = "ready";
    this.workerThreads = threads;
    this.becameReadyAt = performance.now();
    this.events.changed(this);
    for (const frame of earlier) {
      // A frame that broke the protocol has ended the runner (receive changes the state).
      if ((this.lifecycle as RunnerState) === "exited") return;
      this.receive(frame);
    }
  }

  /** Sends an already-encoded call frame and tracks it. */
  startCall(call: InFlightCall, frame: Buffer): void {
    this.stopIdleCountdown();
    if (this.inFlight.size === 0) this.holdProcess(true);
    this.inFlight.set(call.callId, call);
    this.events.changed(this);
    sendCoalesced(this.socket!, frame);
  }

  /**
   * An idle runner's connection must not keep the parent's process alive (a
   * script that forgot stop() exits when its work is done, as with undici's
   * idle sockets); a call in flight must. `ws` exposes no ref/unref, so this
   * reaches for its net.Socket, as coalesce.ts does.
   */
  private holdProcess(hold: boolean): void {
    const raw = (this.socket as unknown as { _socket?: { ref(): void; unref(): void } } | undefined)?._socket;
    if (hold) raw?.ref();
    else raw?.unref();
  }

  /**
   * The connection dropped. When the backend can tell how the runner ended (a
   * process's exit code and last output), wait a moment for it, so the calls
   * that fail say why rather than only "connection closed".
   */
  private async connectionClosed(detail: string): Promise<void> {
    const exited = this.provisioned?.exited;
    if (exited && this.lifecycle !== "exited") {
      const ending = await settledWithin(exited, EXIT_DETAIL_WAIT);
      if (ending) detail = `${detail}; ${ending}`;
    }
    this.markExited(detail);
  }

  /**
   * The caller gave up on a call: tell the runner to abort it, and watch that
   * it really stops within the grace period.
   */
  cancelCall(callId: number, reason: CancelMessage["reason"]): void {
    const call = this.inFlight.get(callId);
    if (!call || call.abandoned) return;
    call.abandoned = true;
    this.send({ type: "cancel", callId, reason });
    const grace = this.abortGracePeriod + (this.workerThreads > 0 ? THREAD_REPLACEMENT_MARGIN : 0);
    call.graceTimer = setTimeout(() => this.events.stuck(this, call.functionId), grace);
    call.graceTimer.unref();
  }

  /** Asks the runner's idle check whether it may shut down. */
  askIdleCheck(timeout: number): Promise<boolean> {
    const checkId = this.nextIdleCheckId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(true), timeout);
      const finish = (shutdown: boolean) => {
        clearTimeout(timer);
        this.idleCheckReplies.delete(checkId);
        resolve(shutdown);
      };
      this.idleCheckReplies.set(checkId, finish);
      if (!this.send({ type: "idle-check", checkId })) finish(true);
    });
  }

  /** Asks the runner to exit; the backend's terminate makes sure of it. */
  requestShutdown(reason: string): void {
    this.send({ type: "shutdown", reason });
  }

  send(message: ParentMessage): boolean {
    if (!this.socket || this.socket.readyState !== this.socket.OPEN) return false;
    sendCoalesced(this.socket, encodeMessage(message));
    return true;
  }

  /** Marks the runner gone and fails every call it still had. Idempotent. */
  markExited(detail: string): void {
    if (this.lifecycle === "exited") return;
    this.lifecycle = "exited";
    clearInterval(this.heartbeat);
    clearTimeout(this.idleTimer);
    this.socket?.terminate();
    for (const finish of this.idleCheckReplies.values()) finish(true);
    const calls = [...this.inFlight.values()];
    this.inFlight.clear();
    this.events.changed(this);
    for (const call of calls) {
      clearTimeout(call.graceTimer);
      if (!call.abandoned) call.settle(new RunnerExitedError(this.id, detail));
    }
    this.events.exited(this, detail);
  }

  /** A batch is read frame by frame, until one of them ends the connection. */
  private receive(data: Buffer | undefined): void {
    readMessage(
      data,
      (frame) => {
        this.receiveFrame(frame);
        return this.lifecycle !== "exited";
      },
      (error) => this.brokeProtocol(error),
    );
  }

  /** Every frame is checked before use; one that breaks the protocol ends this runner's connection, nothing else. */
  private receiveFrame(data: Buffer | undefined): void {
    let message: RunnerMessage;
    try {
      message = decodeRunnerMessage(data);
    } catch (error) {
      this.brokeProtocol(error as Error);
      return;
    }
    switch (message.type) {
      case "result":
        return this.finishCall(message);
      case "log":
        return this.forwardLog(message);
      case "idle-check-reply":
        return this.idleCheckReplies.get(message.checkId)?.(message.shutdown);
      default:
        this.log.debug({ type: message.type }, "ignored an unexpected message from the runner");
    }
  }

  private brokeProtocol(error: Error): void {
    this.log.error({}, `runner ${this.id} broke the protocol (${error.message}); closing its connection`);
    this.markExited(`it broke the protocol: ${error.message}`);
  }

  /** The user's logger runs inside a socket handler: if it throws, the process must not go down with it. */
  private forwardLog({ level, text, traceId, spanId, thread }: LogMessage): void {
    try {
      const fields: Record<string, unknown> = traceId ? { stream: "runner", trace_id: traceId, span_id: spanId } : { stream: "runner" };
      if (thread !== undefined) fields.thread = thread;
      this.log[level](fields, text);
    } catch {
      // A logger that cannot log has nowhere to report that either.
    }
  }

  private finishCall(message: ResultMessage): void {
    const call = this.inFlight.get(message.callId);
    if (!call) return;
    this.inFlight.delete(message.callId);
    this.events.changed(this);
    if (this.inFlight.size === 0) this.holdProcess(false);
    clearTimeout(call.graceTimer);
    if (!call.abandoned) call.settle(message);
    this.events.callFinished(this);
  }
}
