/**
 * Admission control for the control plane's TCP connections, from accept
 * until one becomes an authenticated runner WebSocket. Whatever an
 * unauthenticated peer does (reset, hold the socket open, dribble a request,
 * open hundreds) may cost the parent only a bounded number of sockets for a
 * bounded time, and never an uncaught socket error.
 */
import type { Socket } from "node:net";
import type { RefusalReason } from "./refusal-log.js";

/** Internal limits of the listener; tests shorten them. */
export interface AdmissionLimits {
  /**
   * Time in ms a TCP connection has, from accept, to become an authenticated
   * WebSocket; then it is destroyed. Covers idle sockets, slow requests and
   * plain HTTP keep-alive sockets alike.
   */
  handshakeWindow: number;
  /**
   * Unauthenticated connections held at once. Further ones are destroyed on
   * arrival, before anything is read from or written to them.
   */
  maxUnauthenticated: number;
  /**
   * Refused upgrades naming one runner id (or none) whose 401 is still being
   * delivered. Further failed attempts for that id are destroyed without an
   * answer, so a peer that does not read cannot make the parent buffer answers.
   * An upgrade with the right token is never counted against it.
   */
  maxPendingUpgradesPerRunner: number;
}

/** The listener's limits unless its first acquirer passes others. */
export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = {
  handshakeWindow: 5_000,
  maxUnauthenticated: 128,
  maxPendingUpgradesPerRunner: 4,
};

/**
 * How long in ms a refused socket may take to flush its short answer before it
 * is destroyed anyway (a peer that stopped reading never lets it finish).
 */
const REFUSED_LINGER = 1_000;

interface Waiting {
  /** "address:port", kept from accept: a reset socket forgets its remote address. */
  peer: string;
  /** The handshake window, or once refused, the linger before the socket is destroyed. */
  timer: NodeJS.Timeout;
  onClose(): void;
  /** The runner id a refused upgrade named; counted in refusalsInFlight until the socket closes. */
  refusedRunnerId?: string;
}

/**
 * Tracks every accepted connection until it is authenticated, refused or
 * closed: the cap, the handshake window and the refusals all live here; the
 * listener only decides who is authenticated.
 */
export class Admission {
  private readonly waiting = new Map<Socket, Waiting>();
  private readonly refusalsInFlight = new Map<string, number>();

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly onRefused: (reason: RefusalReason, peer: string) => void,
  ) {}

  /** Connections accepted but not (yet) authenticated. */
  get unauthenticatedCount(): number {
    return this.waiting.size;
  }

  /** Takes a newly accepted connection: tracked until it is authenticated or closed. */
  admit(socket: Socket): void {
    // Before anything else: a reset can come at any moment, and an 'error' event nobody
    // listens to kills the parent. The 'close' that follows every error does the cleanup.
    socket.on("error", ignoreSocketError);
    const peer = peerAddress(socket);
    if (this.waiting.size >= this.limits.maxUnauthenticated) {
      socket.destroy();
      this.onRefused("connection-limit", peer);
      return;
    }
    const timer = setTimeout(() => {
      this.onRefused("handshake-window", peer);
      socket.destroy();
    }, this.limits.handshakeWindow);
    timer.unref();
    const onClose = () => this.forget(socket);
    socket.once("close", onClose);
    this.waiting.set(socket, { peer, timer, onClose });
  }

  /** The connection is an authenticated WebSocket now: no longer this class's business. */
  accepted(socket: Socket): void {
    const entry = this.forget(socket);
    if (entry) socket.off("close", entry.onClose);
  }

  /**
   * Refuses an upgrade that named `runnerId` (or "" for none) without its
   * token: answers `response` and closes, or destroys at once when that id
   * already has its share of refusals in flight.
   */
  refuseUpgrade(socket: Socket, runnerId: string, response: string): void {
    const entry = this.waiting.get(socket);
    if (!entry) {
      socket.destroy();
      return;
    }
    const inFlight = this.refusalsInFlight.get(runnerId) ?? 0;
    if (inFlight >= this.limits.maxPendingUpgradesPerRunner) {
      this.onRefused("runner-limit", entry.peer);
      socket.destroy();
      return;
    }
    this.refusalsInFlight.set(runnerId, inFlight + 1);
    entry.refusedRunnerId = runnerId;
    this.onRefused("unauthorized", entry.peer);
    this.answerAndClose(socket, entry, response);
  }

  /** Answers `response` (a complete HTTP response) and closes the connection. */
  refuse(socket: Socket, reason: RefusalReason, response: string): void {
    const entry = this.waiting.get(socket);
    if (!entry) {
      socket.destroy();
      return;
    }
    this.onRefused(reason, entry.peer);
    this.answerAndClose(socket, entry, response);
  }

  /** Destroys every connection still waiting (the listener is closing). */
  closeAll(): void {
    for (const [socket, entry] of this.waiting) {
      clearTimeout(entry.timer);
      socket.off("close", entry.onClose);
      socket.destroy();
    }
    this.waiting.clear();
    this.refusalsInFlight.clear();
  }

  private answerAndClose(socket: Socket, entry: Waiting, response: string): void {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => socket.destroy(), Math.min(REFUSED_LINGER, this.limits.handshakeWindow));
    entry.timer.unref();
    // The HTTP server lets sockets half-open (allowHalfOpen): end() alone would wait for the peer's FIN forever.
    socket.end(response, () => socket.destroy());
  }

  private forget(socket: Socket): Waiting | undefined {
    const entry = this.waiting.get(socket);
    if (!entry) return undefined;
    clearTimeout(entry.timer);
    this.waiting.delete(socket);
    if (entry.refusedRunnerId !== undefined) {
      const left = (this.refusalsInFlight.get(entry.refusedRunnerId) ?? 1) - 1;
      if (left > 0) this.refusalsInFlight.set(entry.refusedRunnerId, left);
      else this.refusalsInFlight.delete(entry.refusedRunnerId);
    }
    return entry;
  }
}

/** "address:port" of the peer, for logs ("[v6]:port" for IPv6). */
export function peerAddress(socket: Socket): string {
  const address = socket.remoteAddress ?? "unknown";
  const host = socket.remoteFamily === "IPv6" ? `[${address}]` : address;
  return `${host}:${socket.remotePort ?? "?"}`;
}

function ignoreSocketError(): void {
  // Peers reset and vanish; nothing to do beyond the 'close' that follows.
}
