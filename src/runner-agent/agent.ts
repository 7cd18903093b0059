/**
 * The runner's side of the connection: dial the parent, authenticate, say
 * hello, run calls, and end when the parent says so or is gone. It never
 * exits the process itself (run.ts does), so LocalBackend can run it in the
 * parent's own process.
 *
 * The parent is a peer like any other: every frame it sends is checked
 * before use, nothing it sends before its welcome is executed, and from the
 * moment the socket opens there is a liveness check, so a silent or broken
 * parent always ends the agent.
 */
import type { WebSocket as WsSocket } from "ws";
import { wsModule } from "../protocol/ws-module.js";
import { decodeParentMessage, encodeMessage, readMessage, type DecodedCall, type DecodedParentMessage } from "../protocol/codec.js";
import { flushCoalesced, sendCoalesced } from "../protocol/coalesce.js";
import { activeTraceIds } from "../observability/log-correlation.js";
import type { CallHost } from "./call-host.js";
import {
  AUTHORIZATION_HEADER,
  DEFAULT_MAX_PAYLOAD,
  PROTOCOL_VERSION,
  RUNNER_ID_HEADER,
  type LogMessage,
  type RunnerMessage,
} from "../protocol/messages.js";
import type { RunnerBootInfo, RunnerTrust } from "../protocol/runner-env.js";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { retry } from "../retry.js";

const { WebSocket } = wsModule();
type WebSocket = WsSocket;

export interface AgentOptions {
  boot: RunnerBootInfo;
  appVersion: string;
  /** What runs the calls: the main thread itself, or worker threads. */
  calls: CallHost;
  /** Diagnostics that must not go through the forwarded console (it would loop). */
  report?: (message: string) => void;
  /**
   * Whether the connection keeps the process alive (default true: it is what a runner
   * process lives for). LocalBackend's in-process agents say false, so the parent's
   * process can exit when its work is done.
   */
  holdsProcess?: boolean;
}

/** Why the agent stopped; run.ts turns it into an exit code. */
export interface AgentEnd {
  reason: "shutdown" | "parent-gone" | "refused" | "unauthorized" | "never-connected" | "protocol-error" | "untrusted-parent";
  detail: string;
}

/**
 * TLS options that trust the parent's certificate and nothing else. The check
 * runs inside the TLS handshake, before ws writes the upgrade request (which
 * carries the token). Verification stays on (`rejectUnauthorized`): with it
 * off Node would never call checkServerIdentity at all.
 */
function trustOnly(trust: RunnerTrust): { ca: string[]; rejectUnauthorized: true; checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined } {
  return {
    ca: [trust.ca],
    rejectUnauthorized: true,
    checkServerIdentity: (host, cert) => {
      if (trust.fingerprint256 === undefined) return checkServerIdentity(host, cert);
      if (cert.fingerprint256 === trust.fingerprint256) return undefined;
      return Object.assign(new Error(`its certificate ${cert.fingerprint256} is not the parent's ${trust.fingerprint256}`), { code: PIN_MISMATCH });
    },
  };
}

const PIN_MISMATCH = "FLAME_PARENT_CERTIFICATE_MISMATCH";

/** Certificate failures (a pin mismatch, or a chain the given CA does not sign): retrying cannot help. */
function isUntrusted(error: Error): boolean {
  const code = (error as NodeJS.ErrnoException).code ?? "";
  return code === PIN_MISMATCH || /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT_ALTNAME_INVALID/.test(code);
}

function untrustedDetail(url: string, error: Error): string {
  return `the peer at ${url} is not this runner's parent (${error.message}): its token was not sent`;
}

/** Where the session with the parent is: only a welcomed session runs calls. */
type SessionState = "dialing" | "connected" | "hello-sent" | "welcomed" | "ended";

/** A refused upgrade: the status tells whether retrying can help. */
/** The peer at the parent's address is not the parent this runner was given: nothing was sent to it. */
class UntrustedParentError extends Error {}

class UpgradeRefusedError extends Error {
  constructor(readonly statusCode: number) {
    super(`the parent answered the upgrade with HTTP ${statusCode}`);
  }
}

export class Agent {
  private socket: WebSocket | undefined;
  private state: SessionState = "dialing";
  private resolveEnd!: (end: AgentEnd) => void;
  /** Settles once, when the agent has stopped for good, whatever stopped it. */
  readonly done = new Promise<AgentEnd>((resolve) => (this.resolveEnd = resolve));
  private livenessTimer: NodeJS.Timeout | undefined;
  private lastPingAt = Date.now();
  private lastDialError: Error | undefined;
  /** Aborted when the agent ends, which stops a connect still retrying. */
  private readonly lifetime = new AbortController();

  /** Made once, not per frame: whether calls' arguments are decoded here (not when threads decode them). */
  private readonly decodeOptions: { args: boolean };

  constructor(private readonly options: AgentOptions) {
    this.decodeOptions = { args: options.calls.decodesArgs };
  }

  /**
   * Dials the parent, retrying failed attempts (a fresh machine's network may
   * not be up yet) until the failsafe `connectTimeout` runs out. Resolves once
   * the socket is open; from then on the socket's close, an error, or a silent
   * parent ends the agent, even while the app's entry module is still loading.
   * Rejects (and ends the agent) when the parent refuses the token or cannot be reached.
   */
  async connect(): Promise<void> {
    const { boot } = this.options;
    let socket: WebSocket;
    try {
      socket = await retry(() => this.dial().catch((error: Error) => {
        this.lastDialError = error;
        throw error;
      }), {
        deadline: Date.now() + boot.connectTimeout,
        signal: this.lifetime.signal,
        // Small at first: a fresh machine's network usually comes up within milliseconds.
        baseDelay: 50,
        maxDelay: 1_000,
        // A refused token stays refused, an impostor stays an impostor; anything else
        // (no route yet, connection refused) may clear up.
        shouldRetry: (error) => !(error instanceof UpgradeRefusedError && error.statusCode === 401) && !(error instanceof UntrustedParentError),
      });
    } catch (error) {
      if (this.lifetime.signal.aborted) throw new Error("the agent was closed while connecting");
      if (error instanceof UpgradeRefusedError && error.statusCode === 401) {
        this.end({ reason: "unauthorized", detail: "the parent refused this runner's token (HTTP 401)" });
      } else if (error instanceof UntrustedParentError) {
        this.end({ reason: "untrusted-parent", detail: error.message });
      } else {
        this.end({
          reason: "never-connected",
          detail: `could not reach the parent at ${boot.parentUrl} within ${boot.connectTimeout} ms: ${(error as Error).message}`,
        });
      }
      throw error;
    }
    this.adopt(socket);
  }

  /**
   * Sends hello over the open connection and serves calls until the end. With
   * `entryError` (the app failed to load) the hello reports it and the parent refuses.
   */
  serve(entryError?: string): Promise<AgentEnd> {
    if (this.state !== "connected") return this.done;
    this.state = "hello-sent";
    // The hello opens the session: it travels alone, ahead of anything else, never inside a batch.
    if (this.socket) flushCoalesced(this.socket);
    this.sendNow({
      type: "hello",
      protocolVersion: PROTOCOL_VERSION,
      appVersion: this.options.appVersion,
      runnerId: this.options.boot.runnerId,
      pid: process.pid,
      poolDefined: this.options.calls.poolDefined(),
      ...(entryError ? { entryError } : {}),
      ...(this.options.calls.threads > 0 ? { threads: this.options.calls.threads } : {}),
    });
    return this.done;
  }

  /** What the last failed attempt to reach the parent met, while connecting (for the runner's failsafe message). */
  get lastConnectFailure(): string | undefined {
    return this.lastDialError?.message;
  }

  /**
   * Forwards a line of console output to the parent's log, if connected. A
   * line from a worker thread comes with its thread and the trace ids it was
   * written under; a line of this thread takes the ids of the span active now.
   */
  forwardLog(level: LogMessage["level"], text: string, from?: { thread: number; traceId?: string | undefined; spanId?: string | undefined }): boolean {
    try {
      // Written inside a call's span: the parent's log line names the same trace.
      const ids = from ?? activeTraceIds();
      const message: LogMessage = { type: "log", level, text };
      if (ids?.traceId && ids.spanId) {
        message.traceId = ids.traceId;
        message.spanId = ids.spanId;
      }
      if (from) message.thread = from.thread;
      return this.send(message);
    } catch {
      // A line over maxPayload is not worth failing the app's console call for.
      return false;
    }
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
        ...(boot.tls ? trustOnly(boot.tls) : {}),
      });
      // Listening for errors for the socket's whole life: ws can emit one after a refused
      // upgrade or a protocol error, and an unheard 'error' would crash the runner.
      socket.on("error", (error) => {
        reject(isUntrusted(error) ? new UntrustedParentError(untrustedDetail(boot.parentUrl, error)) : error);
        this.onSocketError(socket, error);
      });
      socket.once("open", () => resolve(socket));
      socket.once("unexpected-response", (_request, response) => {
        reject(new UpgradeRefusedError(response.statusCode ?? 0));
        response.resume();
        socket.terminate();
      });
    });
  }

  /** Takes over an open socket: every way it can end now ends the agent. */
  private adopt(socket: WebSocket): void {
    if (this.state === "ended") {
      socket.terminate();
      return;
    }
    this.socket = socket;
    this.state = "connected";
    if (this.options.holdsProcess === false) (socket as unknown as { _socket?: { unref(): void } })._socket?.unref();
    socket.on("message", (data: Buffer, isBinary: boolean) => this.receive(isBinary ? data : undefined));
    socket.on("close", (code) => this.end({ reason: "parent-gone", detail: `connection closed (${code})` }));
    socket.on("ping", () => {
      this.lastPingAt = Date.now();
    });
    this.armLiveness();
  }

  private onSocketError(socket: WebSocket, error: Error): void {
    if (socket !== this.socket) return;
    // ws closes the socket after a protocol error (invalid frame, oversize message).
    this.end({ reason: "protocol-error", detail: `the connection to the parent failed: ${error.message}` });
  }

  /** The parent pings every heartbeatInterval from the moment it accepts the socket; three silent intervals mean it is gone. */
  private armLiveness(): void {
    this.lastPingAt = Date.now();
    const tolerance = 3 * this.options.boot.heartbeatInterval;
    const check = () => {
      // After the event loop was blocked (a long synchronous call), timers run before pending
      // socket reads: look again once I/O has been read before concluding the parent is gone.
      setImmediate(() => {
        if (this.state === "ended") return;
        const silentFor = Date.now() - this.lastPingAt;
        if (silentFor < tolerance) {
          this.livenessTimer = setTimeout(check, tolerance - silentFor);
          this.livenessTimer.unref();
        } else {
          this.end({ reason: "parent-gone", detail: `no ping from the parent for ${silentFor} ms` });
        }
      });
    };
    this.livenessTimer = setTimeout(check, tolerance);
    this.livenessTimer.unref();
  }

  /** A batch is read frame by frame, until one of them ends the session. */
  private receive(data: Buffer | undefined): void {
    readMessage(
      data,
      (frame) => {
        this.receiveFrame(frame);
        return this.state !== "ended";
      },
      (error) => this.end({ reason: "protocol-error", detail: `the parent sent an invalid frame: ${error.message}` }),
    );
  }

  private receiveFrame(data: Buffer | undefined): void {
    // ws still delivers frames that arrived before a close it is completing: an ended session reads nothing.
    if (this.state === "ended") return;
    let message: DecodedParentMessage;
    try {
      message = decodeParentMessage(data, this.decodeOptions);
    } catch (error) {
      this.end({ reason: "protocol-error", detail: `the parent sent an invalid frame: ${(error as Error).message}` });
      return;
    }
    if (this.state === "connected") {
      this.end({ reason: "protocol-error", detail: `the parent sent "${message.type}" before this runner said hello` });
      return;
    }
    if (message.type === "refuse") {
      this.end({ reason: "refused", detail: message.reason });
      return;
    }
    if (message.type === "welcome") {
      if (this.state === "welcomed") this.end({ reason: "protocol-error", detail: "the parent welcomed this runner twice" });
      else this.state = "welcomed";
      return;
    }
    // Nothing is executed for a parent that has not accepted this runner.
    if (this.state !== "welcomed") {
      this.end({ reason: "protocol-error", detail: `the parent sent "${message.type}" before welcoming this runner` });
      return;
    }
    switch (message.type) {
      case "call":
        this.run(message, data!);
        return;
      case "cancel":
        this.options.calls.cancel(message.callId, message.reason);
        return;
      case "idle-check":
        void this.idleCheck(message.checkId);
        return;
      case "shutdown":
        this.end({ reason: "shutdown", detail: `the parent asked (${message.reason})` });
        return;
    }
  }

  private run(message: DecodedCall, frame: Buffer): void {
    if (this.options.calls.isRunning(message.callId)) {
      this.end({ reason: "protocol-error", detail: `the parent reused call id ${message.callId} while that call was running` });
      return;
    }
    const result = this.options.calls.run(message, frame);
    if (result instanceof Promise) void result.then((settled) => this.answer(settled));
    else this.answer(result);
  }

  private answer(result: Buffer): void {
    const socket = this.socket;
    // A session that ended meanwhile has nobody to answer (its calls were aborted).
    if (this.state === "ended" || !socket || socket.readyState !== WebSocket.OPEN) return;
    sendCoalesced(socket, result);
  }

  private async idleCheck(checkId: number): Promise<void> {
    let shutdown = true;
    try {
      shutdown = await this.options.calls.idleCheck();
    } catch (error) {
      this.options.report?.(`idle check threw, allowing shutdown: ${(error as Error).message}`);
    }
    this.send({ type: "idle-check-reply", checkId, shutdown });
  }

  private sendNow(message: RunnerMessage): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(encodeMessage(message), { binary: true });
  }

  private send(message: RunnerMessage): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    sendCoalesced(socket, encodeMessage(message));
    return true;
  }

  private end(end: AgentEnd): void {
    if (this.state === "ended") return;
    this.state = "ended";
    this.lifetime.abort();
    clearTimeout(this.livenessTimer);
    this.options.calls.close(new Error(`runner stopping: ${end.detail}`));
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      // What this session already sent (a last result, a log line) leaves before the close frame.
      flushCoalesced(this.socket);
      this.socket.close(1000, end.reason);
    }
    else this.socket?.terminate();
    this.resolveEnd(end);
  }
}
