/**
 * The runner's side of the connection: dial the parent, authenticate, say
 * hello, run calls, and end when the parent says so or is gone. It never
 * exits the process itself (main.ts does), so LocalBackend can run it in the
 * parent's own process.
 */
import { WebSocket } from "ws";
import { decodeMessage, encodeMessage, serializeError } from "../protocol/codec.js";
import { sendCoalesced } from "../protocol/coalesce.js";
import { CallCancellation } from "./call-context.js";
import {
  AUTHORIZATION_HEADER,
  DEFAULT_MAX_PAYLOAD,
  PROTOCOL_VERSION,
  RUNNER_ID_HEADER,
  type CallMessage,
  type ParentMessage,
  type RunnerMessage,
} from "../protocol/messages.js";
import type { RunnerBootInfo } from "../protocol/runner-env.js";
import type { RegisteredPool } from "../runtime.js";

export interface AgentOptions {
  boot: RunnerBootInfo;
  appVersion: string;
  /** The pool whose functions this runner serves; undefined if the entry module did not define it. */
  findPool: () => RegisteredPool | undefined;
  /** Diagnostics that must not go through the forwarded console (it would loop). */
  report?: (message: string) => void;
}

/** Why the agent stopped; main.ts turns it into an exit code. */
export interface AgentEnd {
  reason: "shutdown" | "parent-gone" | "refused" | "unauthorized" | "never-connected";
  detail: string;
}

export class Agent {
  private socket: WebSocket | undefined;
  private readonly running = new Map<number, CallCancellation>();
  private ended = false;
  private resolveEnd!: (end: AgentEnd) => void;
  /** Settles once, when the agent has stopped for good. */
  readonly done = new Promise<AgentEnd>((resolve) => (this.resolveEnd = resolve));
  private livenessTimer: NodeJS.Timeout | undefined;
  private lastPingAt = Date.now();

  constructor(private readonly options: AgentOptions) {}

  /**
   * Dials the parent, retrying refused connections (a fresh machine's network
   * may not be up yet) until the failsafe `connectTimeout` runs out.
   */
  async connect(): Promise<WebSocket> {
    const { boot } = this.options;
    const deadline = Date.now() + boot.connectTimeout;
    let delay = 50;
    for (;;) {
      try {
        return await this.dial();
      } catch (error) {
        if ((error as { unauthorized?: boolean }).unauthorized) {
          this.end({ reason: "unauthorized", detail: "the parent refused this runner's token" });
          throw error;
        }
        if (Date.now() + delay >= deadline) {
          this.end({
            reason: "never-connected",
            detail: `could not reach the parent at ${boot.parentUrl} within ${boot.connectTimeout} ms: ${(error as Error).message}`,
          });
          throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 1_000);
      }
    }
  }

  /**
   * Sends hello over an open connection and serves calls until the end. With
   * `entryError` (the app failed to load) the hello reports it and the parent refuses.
   */
  serve(socket: WebSocket, entryError?: string): Promise<AgentEnd> {
    this.socket = socket;
    socket.on("message", (data: Buffer) => this.receive(data));
    socket.on("close", () => this.parentGone("connection closed"));
    // The parent pings only once it has welcomed the runner (after its provider answered the
    // create, which can come after the runner connected): liveness is judged from then on.
    socket.on("ping", () => this.armLiveness());
    this.send({
      type: "hello",
      protocolVersion: PROTOCOL_VERSION,
      appVersion: this.options.appVersion,
      runnerId: this.options.boot.runnerId,
      pid: process.pid,
      poolDefined: this.options.findPool() !== undefined,
      ...(entryError ? { entryError } : {}),
    });
    return this.done;
  }

  /** Forwards a line of console output to the parent's log, if connected. */
  forwardLog(level: "debug" | "info" | "warn" | "error", text: string): boolean {
    return this.send({ type: "log", level, text });
  }

  /** Stops serving: aborts running calls and closes the connection. */
  close(detail = "closed"): void {
    this.end({ reason: "shutdown", detail });
  }

  private dial(): Promise<WebSocket> {
    const { boot } = this.options;
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(boot.parentUrl, {
        headers: { [AUTHORIZATION_HEADER]: `Bearer ${boot.token}`, [RUNNER_ID_HEADER]: boot.runnerId },
        maxPayload: DEFAULT_MAX_PAYLOAD,
        perMessageDeflate: false,
        handshakeTimeout: Math.max(1_000, boot.connectTimeout),
      });
      socket.once("open", () => {
        socket.off("error", reject);
        resolve(socket);
      });
      socket.once("unexpected-response", (_request, response) => {
        socket.off("error", reject);
        const error = new Error(`parent answered the upgrade with HTTP ${response.statusCode}`) as Error & { unauthorized?: boolean };
        error.unauthorized = response.statusCode === 401;
        socket.terminate();
        reject(error);
      });
      socket.once("error", reject);
    });
  }

  /** The parent pings every heartbeatInterval; three silent intervals mean it is gone. */
  private armLiveness(): void {
    this.lastPingAt = Date.now();
    if (this.livenessTimer) return;
    const tolerance = 3 * this.options.boot.heartbeatInterval;
    const check = () => {
      // After the event loop was blocked (a long synchronous call), timers run before pending
      // socket reads: look again once I/O has been read before concluding the parent is gone.
      setImmediate(() => {
        const silentFor = Date.now() - this.lastPingAt;
        if (silentFor < tolerance) {
          this.livenessTimer = setTimeout(check, tolerance - silentFor);
          this.livenessTimer.unref();
        } else {
          this.parentGone(`no ping from the parent for ${silentFor} ms`);
        }
      });
    };
    this.livenessTimer = setTimeout(check, tolerance);
    this.livenessTimer.unref();
  }

  private receive(data: Buffer): void {
    let message: ParentMessage;
    try {
      message = decodeMessage<ParentMessage>(data);
    } catch (error) {
      this.options.report?.(`undecodable frame from the parent: ${(error as Error).message}`);
      return;
    }
    switch (message.type) {
      case "call":
        void this.run(message);
        return;
      case "cancel":
        this.running.get(message.callId)?.abort(new Error(`call cancelled by the parent (${message.reason})`));
        return;
      case "idle-check":
        void this.idleCheck(message.checkId);
        return;
      case "shutdown":
        this.end({ reason: "shutdown", detail: `the parent asked (${message.reason})` });
        return;
      case "refuse":
        this.end({ reason: "refused", detail: message.reason });
        return;
      case "welcome":
        this.armLiveness();
        return;
    }
  }

  private async run(message: CallMessage): Promise<void> {
    const { callId, functionId } = message;
    const pool = this.options.findPool();
    const fn = pool?.lookupFunction(functionId);
    if (!fn) {
      this.send({
        type: "result",
        callId,
        ok: false,
        error: { kind: "unknown-function", name: "UnknownFunctionError", message: `no function "${functionId}"` },
      });
      return;
    }
    const cancellation = new CallCancellation();
    this.running.set(callId, cancellation);
    const context = cancellation.context(this.options.boot.runnerId, this.options.boot.pool);
    let reply: RunnerMessage;
    try {
      const value = await fn(...message.args, context);
      reply = { type: "result", callId, ok: true, value };
    } catch (error) {
      reply = { type: "result", callId, ok: false, error: serializeError(error) };
    } finally {
      this.running.delete(callId);
    }
    try {
      this.send(reply);
    } catch (error) {
      // The value could not be serialized (a function, a symbol, too large): the caller gets a SerializationError.
      this.send({ type: "result", callId, ok: false, error: serializeError(error, "serialization") });
    }
  }

  private async idleCheck(checkId: number): Promise<void> {
    let shutdown = true;
    try {
      shutdown = (await this.options.findPool()?.runIdleCheck()) ?? true;
    } catch (error) {
      this.options.report?.(`idle check threw, allowing shutdown: ${(error as Error).message}`);
    }
    this.send({ type: "idle-check-reply", checkId, shutdown });
  }

  private send(message: RunnerMessage): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    sendCoalesced(socket, encodeMessage(message));
    return true;
  }

  private parentGone(detail: string): void {
    this.end({ reason: "parent-gone", detail });
  }

  private end(end: AgentEnd): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.livenessTimer);
    for (const cancellation of this.running.values()) cancellation.abort(new Error(`runner stopping: ${end.detail}`));
    this.running.clear();
    this.socket?.close(1000, end.reason);
    this.resolveEnd(end);
  }
}
