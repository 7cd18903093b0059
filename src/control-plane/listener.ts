/**
 * The parent's control plane: one WebSocket listener per bind address, shared
 * by every pool in the process. A runner may connect only with the one-time
 * token of a runner the parent is booting; anything else is refused with 401
 * before the upgrade completes.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import type { ControlPlaneAddress } from "../backends/backend.js";
import { AUTHORIZATION_HEADER, DEFAULT_MAX_PAYLOAD, RUNNER_ID_HEADER } from "../protocol/messages.js";

export const LOOPBACK: ControlPlaneAddress = {
  host: "127.0.0.1",
  port: 0,
  advertisedUrl: (port) => `ws://127.0.0.1:${port}`,
};

interface Expected {
  tokenDigest: Buffer;
  onConnect(socket: WebSocket): void;
}

export class ControlPlane {
  private readonly expected = new Map<string, Expected>();
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: DEFAULT_MAX_PAYLOAD, perMessageDeflate: false });
  private users = 0;

  private constructor(
    private readonly key: string,
    private readonly server: Server,
    readonly address: ControlPlaneAddress,
  ) {
    server.on("upgrade", (request, socket, head) => this.upgrade(request, socket, head));
  }

  /** Takes a reference on the listener for `address`, starting it if needed. */
  static async acquire(address: ControlPlaneAddress = LOOPBACK): Promise<ControlPlane> {
    const key = `${address.host}|${address.port}`;
    let starting = listeners.get(key);
    if (!starting) {
      starting = ControlPlane.listen(key, address);
      listeners.set(key, starting);
      starting.catch(() => listeners.delete(key));
    }
    const plane = await starting;
    plane.users += 1;
    return plane;
  }

  private static listen(key: string, address: ControlPlaneAddress): Promise<ControlPlane> {
    const server = createServer((_request, response) => {
      response.writeHead(426, { "content-type": "text/plain" }).end("flame-ts control plane: WebSocket only\n");
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: address.host, port: address.port }, () => {
        server.off("error", reject);
        // Connected runners keep the process alive; the listener alone must not, so a script
        // whose pools scaled to zero can exit.
        server.unref();
        resolve(new ControlPlane(key, server, address));
      });
    });
  }

  /** The URL runners of this listener dial. */
  get url(): string {
    return this.address.advertisedUrl((this.server.address() as AddressInfo).port);
  }

  /** Drops a reference; the last one closes the listener so the process can exit. */
  async release(): Promise<void> {
    this.users -= 1;
    if (this.users > 0) return;
    listeners.delete(this.key);
    for (const client of this.wss.clients) client.terminate();
    this.wss.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * Accepts exactly one connection from `runnerId` presenting `token`. Returns
   * a function that withdraws the expectation (boot gave up).
   */
  expect(runnerId: string, token: string, onConnect: (socket: WebSocket) => void): () => void {
    this.expected.set(runnerId, { tokenDigest: digest(token), onConnect });
    return () => {
      this.expected.delete(runnerId);
    };
  }

  private upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const runnerId = request.headers[RUNNER_ID_HEADER];
    const authorization = request.headers[AUTHORIZATION_HEADER];
    const expected = typeof runnerId === "string" ? this.expected.get(runnerId) : undefined;
    const presented = typeof authorization === "string" && authorization.startsWith("Bearer ") ? authorization.slice(7) : "";
    if (!expected || !timingSafeEqual(expected.tokenDigest, digest(presented))) {
      socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    // One-time: the token is worthless from here on, even if someone read it from a machine's environment.
    this.expected.delete(runnerId as string);
    this.wss.handleUpgrade(request, socket, head, (ws) => expected.onConnect(ws));
  }
}

const listeners = new Map<string, Promise<ControlPlane>>();

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}
