/**
 * The parent's control plane: one WebSocket listener per bind address, shared
 * by every pool in the process. A runner may connect only with the one-time
 * token of a runner the parent is booting; anything else is refused with 401
 * before the upgrade completes. Connections that are not yet authenticated
 * are bounded in number and time (admission.ts), so no peer without a token
 * can crash the parent or exhaust its file descriptors.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { WebSocket, WebSocketServer } from "ws";
import { wsModule } from "../protocol/ws-module.js";
import type { ControlPlaneAddress } from "./address.js";
import { resolveLogger, type Logger } from "../log.js";
import { AUTHORIZATION_HEADER, DEFAULT_MAX_PAYLOAD, RUNNER_ID_HEADER } from "../protocol/messages.js";
import { Admission, DEFAULT_ADMISSION_LIMITS, peerAddress, type AdmissionLimits } from "./admission.js";
import { RefusalLog } from "./refusal-log.js";
import { fingerprintOf, generateTlsIdentity } from "./certificate.js";
import { loopbackAddress, type ControlPlaneTls } from "./address.js";
import type { RunnerTrust } from "../protocol/runner-env.js";

/*
 * node:http and node:https are taken with process.getBuiltinModule when the
 * listener starts, not imported: on Node 22 and 24, `import` of node:http costs
 * 20-24 ms (its ESM facade reads every export, and one getter loads Node's
 * bundled undici) against 2.5 ms this way, and every runner loads this module
 * (through the pool its app builds) without ever listening.
 */

/** Longest TLS handshake a connection gets before it is dropped, in ms. */
const TLS_HANDSHAKE_TIMEOUT = 5_000;

let processIdentity: ReturnType<typeof generateTlsIdentity> | undefined;

/** What the listener serves, and what its runners are told to trust. */
async function tlsIdentityFor(tls: Exclude<ControlPlaneTls, false>): Promise<{ key: string; certificate: string; trust: RunnerTrust }> {
  if (tls === true) {
    // One identity per parent process, made on first use: a listener started again (a pool
    // stopped and made anew) does not pay for a key and a certificate again. A new process, a new key.
    processIdentity ??= generateTlsIdentity();
    processIdentity.catch(() => (processIdentity = undefined));
    const generated = await processIdentity;
    return { key: generated.keyPem, certificate: generated.certificatePem, trust: { ca: generated.certificatePem, fingerprint256: fingerprintOf(generated.certificatePem) } };
  }
  // Your own PKI: with a CA, runners verify the chain and the host they dial; without, they pin the certificate.
  const trust: RunnerTrust = tls.ca ? { ca: tls.ca } : { ca: tls.certificate, fingerprint256: fingerprintOf(tls.certificate) };
  return { key: tls.key, certificate: tls.certificate, trust };
}

export const LOOPBACK: ControlPlaneAddress = loopbackAddress();

const UNAUTHORIZED = "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const BAD_REQUEST = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

interface Expected {
  tokenDigest: Buffer;
  /** The only address the runner's token is taken from, once the backend knows its machine's (see `bindAddress`). */
  address?: string;
  /** `peer`: the connection's remote IP address. */
  onConnect(socket: WebSocket, peer: string): void;
  /** A second connection presented this runner's used token: someone else has it. */
  onTokenReused?: ((peer: string) => void) | undefined;
  /** The pool's logger, for what concerns this runner (the listener is shared by every pool of the process). */
  log?: Logger | undefined;
}

export class ControlPlane {
  private readonly expected = new Map<string, Expected>();
  /** Runners that connected, by id, with their (spent) token: to recognise it if it comes again. */
  private readonly used = new Map<string, Expected>();
  private readonly refusals: RefusalLog;
  private readonly admission: Admission;
  private users = 0;

  private constructor(
    private readonly key: string,
    private readonly server: Server,
    private readonly wss: WebSocketServer,
    readonly address: ControlPlaneAddress,
    private readonly log: Logger,
    limits: AdmissionLimits,
    /** What runners are given to trust this listener; undefined in clear. */
    readonly runnerTrust: RunnerTrust | undefined,
  ) {
    this.refusals = new RefusalLog(log);
    this.admission = new Admission(limits, (reason, peer) => this.refusals.refused(reason, peer));
    if (runnerTrust) {
      // Under TLS the upgrade arrives on the TLS socket: that is the one admission tracks
      // (a TLS handshake is bounded by the server's own handshakeTimeout).
      server.on("secureConnection", (socket: Socket) => this.admission.admit(socket));
      server.on("tlsClientError", (_error: Error, socket: Duplex) => socket.destroy());
    } else {
      server.on("connection", (socket: Socket) => this.admission.admit(socket));
    }
    server.on("upgrade", (request, socket, head) => this.upgrade(request, socket, head));
    server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => this.clientError(error, socket as Socket));
    server.on("request", (request: IncomingMessage) => this.refusals.refused("not-websocket", peerAddress(request.socket)));
    // With noServer the WebSocketServer has no socket of its own; an error here must still not be uncaught.
    this.wss.on("error", (error) => log.warn({ err: error }, "control plane WebSocket server error"));
  }

  /**
   * Takes a reference on the listener for `address`, starting it if needed.
   * The first acquirer's `log` and `limits` are the listener's; later ones share it as is.
   */
  static async acquire(address: ControlPlaneAddress = LOOPBACK, log?: Logger, limits: Partial<AdmissionLimits> = {}): Promise<ControlPlane> {
    const key = `${address.host}|${address.port}|${address.tls ? "tls" : "clear"}`;
    let starting = listeners.get(key);
    if (!starting) {
      starting = ControlPlane.listen(key, address, log ?? resolveLogger(undefined), { ...DEFAULT_ADMISSION_LIMITS, ...limits });
      listeners.set(key, starting);
      starting.catch(() => listeners.delete(key));
    }
    const plane = await starting;
    plane.users += 1;
    return plane;
  }

  private static async listen(key: string, address: ControlPlaneAddress, log: Logger, limits: AdmissionLimits): Promise<ControlPlane> {
    const refuseHttp = (_request: IncomingMessage, response: ServerResponse) => {
      response.writeHead(426, { "content-type": "text/plain", connection: "close" }).end("flame-ts control plane: WebSocket only\n");
    };
    let server: Server;
    let runnerTrust: RunnerTrust | undefined;
    if (address.tls) {
      const identity = await tlsIdentityFor(address.tls);
      runnerTrust = identity.trust;
      server = process
        .getBuiltinModule("node:https")
        .createServer({ key: identity.key, cert: identity.certificate, handshakeTimeout: TLS_HANDSHAKE_TIMEOUT }, refuseHttp);
    } else {
      server = process.getBuiltinModule("node:http").createServer(refuseHttp);
    }
    // ws is loaded when a pool first listens, not when the package is imported: a runner's worker
    // threads import the app (and so flame-ts) but never listen, and ws is a third of their start.
    const { WebSocketServer } = wsModule();
    const wss = new WebSocketServer({ noServer: true, maxPayload: DEFAULT_MAX_PAYLOAD, perMessageDeflate: false });
    // Every handler is in place before the first connection can arrive.
    const plane = new ControlPlane(key, server, wss, address, log, limits, runnerTrust);
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: address.host, port: address.port }, () => {
        server.off("error", reject);
        // Connected runners keep the process alive; the listener alone must not, so a script
        // whose pools scaled to zero can exit.
        server.unref();
        resolve(plane);
      });
    });
  }

  /** The URL runners of this listener dial. */
  get url(): string {
    const url = this.address.advertisedUrl((this.server.address() as AddressInfo).port);
    // A backend's own address may still say ws://: under TLS, runners must never dial in clear.
    return this.runnerTrust ? url.replace(/^ws:/, "wss:") : url;
  }

  /** Drops a reference; the last one closes the listener so the process can exit. */
  async release(): Promise<void> {
    this.users -= 1;
    if (this.users > 0) return;
    listeners.delete(this.key);
    this.admission.closeAll();
    for (const client of this.wss.clients) client.terminate();
    this.wss.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * Accepts exactly one connection from `runnerId` presenting `token`. Returns
   * a function that withdraws the expectation (boot gave up).
   */
  expect(
    runnerId: string,
    token: string,
    onConnect: (socket: WebSocket, peer: string) => void,
    onTokenReused?: (peer: string) => void,
    log?: Logger,
  ): () => void {
    this.expected.set(runnerId, { tokenDigest: digest(token), onConnect, onTokenReused, log });
    return () => {
      this.expected.delete(runnerId);
    };
  }

  /**
   * From now on, takes `runnerId`'s token only from `address`, the IP of the
   * machine the backend started for it: someone else who read the token (from
   * the machine's environment, its user data, a Secret) and dials from
   * anywhere else is refused, logged as a possible token theft, and does not
   * spend it, so the real runner still gets in.
   */
  bindAddress(runnerId: string, address: string): void {
    const expected = this.expected.get(runnerId);
    if (expected) expected.address = canonicalAddress(address);
  }

  /** The runner is gone: a later use of its token is no longer news. */
  forget(runnerId: string): void {
    this.used.delete(runnerId);
  }

  private upgrade(request: IncomingMessage, duplex: Duplex, head: Buffer): void {
    const socket = duplex as Socket;
    const runnerId = request.headers[RUNNER_ID_HEADER];
    const authorization = request.headers[AUTHORIZATION_HEADER];
    const expected = typeof runnerId === "string" ? this.expected.get(runnerId) : undefined;
    const presented = typeof authorization === "string" && authorization.startsWith("Bearer ") ? authorization.slice(7) : "";
    if (!expected || !timingSafeEqual(expected.tokenDigest, digest(presented))) {
      const used = typeof runnerId === "string" ? this.used.get(runnerId) : undefined;
      if (used && timingSafeEqual(used.tokenDigest, digest(presented))) this.tokenReused(runnerId as string, used, peerAddress(socket));
      this.admission.refuseUpgrade(socket, typeof runnerId === "string" ? runnerId : "", UNAUTHORIZED);
      return;
    }
    const peer = canonicalAddress(socket.remoteAddress ?? "");
    if (expected.address !== undefined && peer !== expected.address) {
      (expected.log ?? this.log).warn(
        { runnerId, peer: peerAddress(socket), runnerAddress: expected.address },
        `possible token theft: runner ${runnerId}'s one-time token was presented from ${peerAddress(socket)}, but its machine is at ${expected.address}; refused`,
      );
      this.admission.refuseUpgrade(socket, runnerId as string, UNAUTHORIZED);
      return;
    }
    // One-time: the token is worthless from here on, even if someone read it from a machine's environment.
    this.expected.delete(runnerId as string);
    this.used.set(runnerId as string, expected);
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      this.admission.accepted(socket);
      // Until its owner adds listeners (after the hello), an invalid frame would be an
      // uncaught 'error'. ws has already started closing; cut the connection outright.
      ws.on("error", (error) => {
        this.log.debug({ err: error, runnerId }, "runner connection failed; closing it");
        ws.terminate();
      });
      expected.onConnect(ws, peer);
    });
  }

  /**
   * The right token, a second time: two peers had it, so the first connection
   * may not be the runner (a stolen token used first) or the second is a thief.
   * Either way the session is not to be trusted: loud, and the pool ends it.
   */
  private tokenReused(runnerId: string, used: Expected, peer: string): void {
    this.used.delete(runnerId);
    (used.log ?? this.log).warn({ runnerId, peer }, `possible token theft: runner ${runnerId}'s one-time token was presented again from ${peer}; ending that runner`);
    used.onTokenReused?.(peer);
  }

  /** A connection the HTTP parser gave up on (bad request, reset, timeout). */
  private clientError(error: NodeJS.ErrnoException, socket: Socket): void {
    // A reset is a peer that left, not a request to refuse.
    if (error.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    this.admission.refuse(socket, "malformed-request", BAD_REQUEST);
  }
}

const listeners = new Map<string, Promise<ControlPlane>>();

/**
 * An IP address in one spelling, so that a socket's address and a provider's
 * compare equal: IPv4-mapped IPv6 ("::ffff:10.0.0.5") as IPv4, IPv6
 * lowercase and compressed as WHATWG URLs write it.
 */
export function canonicalAddress(address: string): string {
  const unbracketed = address.replace(/^\[|\]$/g, "");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(unbracketed);
  if (mapped) return mapped[1]!;
  if (!unbracketed.includes(":")) return unbracketed;
  try {
    return new URL(`http://[${unbracketed}]/`).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return unbracketed.toLowerCase();
  }
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}
