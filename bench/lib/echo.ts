/**
 * The raw ws echo baseline: a WebSocket server in this (parent) process and
 * an echo peer in a separate plain `node` process dialing it over loopback,
 * the same topology as a flame-ts parent and its runner. With a TLS identity
 * the server is a `ws` server on an `https` server and the peer dials `wss://`
 * pinned to that certificate, as a runner of a `tls: true` backend does.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { WebSocketServer, type WebSocket } from "ws";
import { peerTlsEnv, type BenchTlsIdentity } from "./tls.js";

const ECHO_PEER = fileURLToPath(new URL("../fixtures/echo-peer.mjs", import.meta.url));

/** One connected echo peer. Replies come back in order, so a FIFO of waiters matches them. */
export class EchoPeer {
  private readonly waiters: Array<() => void> = [];

  private constructor(
    private readonly server: WebSocketServer,
    private readonly socket: WebSocket,
    private readonly child: ChildProcess,
    private readonly httpsServer: HttpsServer | undefined,
  ) {
    socket.on("message", () => this.waiters.shift()?.());
  }

  /** Starts the server and the peer process (over TLS with `tls`); resolves once the peer is connected. */
  static async start(tls?: BenchTlsIdentity): Promise<EchoPeer> {
    const wsOptions = { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 };
    let server: WebSocketServer;
    let httpsServer: HttpsServer | undefined;
    let url: string;
    if (tls) {
      httpsServer = createHttpsServer({ key: tls.keyPem, cert: tls.certificatePem });
      server = new WebSocketServer({ server: httpsServer, ...wsOptions });
      const listening = httpsServer;
      await new Promise<void>((resolve) => listening.listen({ host: "127.0.0.1", port: 0 }, () => resolve()));
      url = `wss://127.0.0.1:${(httpsServer.address() as AddressInfo).port}`;
    } else {
      server = new WebSocketServer({ host: "127.0.0.1", port: 0, ...wsOptions });
      await new Promise<void>((resolve) => server.once("listening", () => resolve()));
      url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
    }
    const connected = new Promise<WebSocket>((resolve) => server.once("connection", resolve));
    const child = spawn(process.execPath, [ECHO_PEER, url], { stdio: ["ignore", "ignore", "inherit"], ...(tls ? { env: peerTlsEnv(tls) } : {}) });
    const exited = new Promise<never>((_, reject) => child.once("exit", (code) => reject(new Error(`echo peer exited with ${code}`))));
    exited.catch(() => undefined);
    const socket = await Promise.race([connected, exited]);
    return new EchoPeer(server, socket, child, httpsServer);
  }

  /** Sends `payload` and resolves when it has come back. */
  roundTrip(payload: Buffer): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.socket.send(payload, { binary: true });
    });
  }

  /** Closes the connection (the peer exits on close) and the server. */
  async close(): Promise<void> {
    const exited = this.child.exitCode === null ? new Promise((resolve) => this.child.once("exit", resolve)) : undefined;
    this.socket.close();
    this.server.close();
    this.httpsServer?.close();
    const killer = setTimeout(() => this.child.kill("SIGKILL"), 2_000);
    await exited;
    clearTimeout(killer);
  }
}
