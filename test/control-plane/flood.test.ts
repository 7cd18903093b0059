/**
 * The parent's control-plane listener against peers that never authenticate:
 * resets, held-open sockets, slow requests, a connection flood and garbage
 * frames. The parent runs in this process, so any uncaught socket error fails
 * the run; every test also checks that none happened.
 */
import { once } from "node:events";
import { readdirSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { AdmissionLimits } from "../../src/control-plane/admission.js";
import { ControlPlane, LOOPBACK } from "../../src/control-plane/listener.js";
import type { Logger } from "../../src/log.js";
import { poolsStoppedAfterEach } from "../support/pools.js";
import { waitFor } from "../support/processes.js";

interface LogLine {
  level: keyof Logger;
  fields: Record<string, unknown>;
  message: string;
}

function recordingLogger(lines: LogLine[]): Logger {
  const record = (level: keyof Logger) => (fields: Record<string, unknown>, message: string) => lines.push({ level, fields, message });
  return { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") };
}

const planes: ControlPlane[] = [];
/**
 * Takes the loopback listener first, so the pools of the test share it and its
 * limits (the first acquirer's settings win).
 */
async function listener(limits: Partial<AdmissionLimits> = {}, lines: LogLine[] = []): Promise<ControlPlane> {
  const plane = await ControlPlane.acquire(LOOPBACK, recordingLogger(lines), limits);
  planes.push(plane);
  return plane;
}

const makePool = poolsStoppedAfterEach();
// The listener closes when its last reference goes, whichever of these and the pools' hook runs first.
afterEach(async () => {
  await Promise.all(planes.splice(0).map((plane) => plane.release()));
});

let uncaught: unknown[] = [];
const recordUncaught = (error: unknown) => uncaught.push(error);
beforeEach(() => {
  uncaught = [];
  process.on("uncaughtException", recordUncaught);
});
afterEach(() => {
  process.off("uncaughtException", recordUncaught);
  expect(uncaught, "uncaught exceptions in the parent").toEqual([]);
});

function portOf(plane: ControlPlane): number {
  return Number(new URL(plane.url).port);
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

/** A raw TCP connection to the listener; resolves once connected. */
async function rawConnection(port: number): Promise<Socket> {
  const socket = connect({ host: "127.0.0.1", port });
  socket.on("error", () => undefined);
  await once(socket, "connect");
  return socket;
}

interface Closed {
  /** ms from when the watch started to the socket's 'close'. */
  after: number;
  /** Bytes the parent sent before closing. */
  received: number;
}

/** Resolves when the parent (or the peer itself) has closed `socket`. */
function closing(socket: Socket): Promise<Closed> {
  const started = Date.now();
  let received = 0;
  socket.on("data", (chunk: Buffer) => (received += chunk.length));
  if (socket.destroyed) return Promise.resolve({ after: 0, received });
  return new Promise((resolve) => socket.once("close", () => resolve({ after: Date.now() - started, received })));
}

function upgradeRequest(headers: Record<string, string>): string {
  const lines = [
    "GET / HTTP/1.1",
    "Host: 127.0.0.1",
    "Connection: Upgrade",
    "Upgrade: websocket",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  return `${lines.join("\r\n")}\r\n\r\n`;
}

/**
 * An unauthenticated upgrade that is abandoned mid-response: reset (RST) or
 * closed right after the request, or reset as soon as the 401 starts to arrive.
 */
async function abandonedUpgrade(port: number, how: "reset" | "close" | "reset-on-answer"): Promise<void> {
  const socket = await rawConnection(port);
  const closed = once(socket, "close");
  socket.write(upgradeRequest({ authorization: "Bearer guessed", "x-flame-runner": "someone" }));
  if (how === "reset") socket.resetAndDestroy();
  else if (how === "close") socket.destroy();
  else socket.once("data", () => socket.resetAndDestroy());
  await closed;
}

describe("the control plane survives unauthenticated peers", () => {
  it("survives hundreds of unauthenticated upgrades reset or closed mid-response, and keeps serving calls", async () => {
    const plane = await listener();
    const port = portOf(plane);
    const { add } = makePool({ name: "flood-reset", max: 1 });
    await expect(add(1, 1)).resolves.toBe(2);
    const baseline = openFds();

    const kinds = ["reset", "close", "reset-on-answer"] as const;
    const flood = (async () => {
      for (let wave = 0; wave < 6; wave += 1) {
        await Promise.all(Array.from({ length: 50 }, (_, index) => abandonedUpgrade(port, kinds[index % kinds.length]!)));
      }
    })();
    // Calls keep working while the flood is on.
    const during = [add(2, 2), add(3, 3), add(4, 4)];
    await flood;
    await expect(Promise.all(during)).resolves.toEqual([4, 6, 8]);
    await expect(add(5, 5)).resolves.toBe(10);
    // Every socket the flood opened is gone on the parent's side too.
    await waitFor(() => openFds() <= baseline + 2, `open fds back to ${baseline} (now ${openFds()})`, 3_000);
    console.log(`[flood] 300 abandoned upgrades: parent alive, fds ${baseline} before, ${openFds()} after`);
  });

  it("closes held-open, slow and keep-alive sockets within the handshake window", async () => {
    const handshakeWindow = 500;
    const plane = await listener({ handshakeWindow });
    const port = portOf(plane);
    const baseline = openFds();

    const started = Date.now();
    const idle = await Promise.all(Array.from({ length: 200 }, () => rawConnection(port)));
    const slow = await Promise.all(Array.from({ length: 10 }, () => rawConnection(port)));
    const keepAlive = await Promise.all(Array.from({ length: 5 }, () => rawConnection(port)));
    const all = [...idle, ...slow, ...keepAlive];
    const closed = all.map(closing);
    // Half a request, a byte at a time: never finishes its headers.
    const drip = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + "a".repeat(1_000);
    for (const socket of slow) {
      let sent = 0;
      const timer = setInterval(() => socket.writable && socket.write(drip[sent++ % drip.length]!), 50);
      socket.once("close", () => clearInterval(timer));
    }
    for (const socket of keepAlive) socket.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    expect(openFds()).toBeGreaterThan(baseline + all.length);

    const results = await Promise.all(closed);
    const slowest = Math.max(...results.map((result) => result.after));
    const total = Date.now() - started;
    expect(slowest).toBeLessThan(handshakeWindow + 1_500);
    await waitFor(() => openFds() <= baseline + 2, `open fds back to ${baseline} (now ${openFds()})`, 3_000);
    console.log(
      `[flood] ${all.length} held sockets closed by the parent, the last after ${slowest} ms (${total} ms from the first connect, window ${handshakeWindow} ms); fds ${baseline} before, ${openFds()} after`,
    );
  });

  it("destroys a refused socket right after its 401, even when the peer keeps its side open", async () => {
    // A window far longer than the test: only the refusal itself may close these.
    const plane = await listener({ handshakeWindow: 60_000 });
    const port = portOf(plane);
    const baseline = openFds();
    const peers = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
        socket.on("error", () => undefined);
        await once(socket, "connect");
        socket.resume(); // read the answer, or 'end' never comes
        const answered = once(socket, "end");
        socket.write(upgradeRequest({ "x-flame-runner": "nobody" }));
        await answered;
        return socket;
      }),
    );
    // The peers still hold their 50 sockets; the parent's ends of them must be gone.
    await waitFor(() => openFds() <= baseline + peers.length + 2, `the parent's refused sockets closed (fds ${openFds()}, baseline ${baseline})`, 3_000);
    for (const socket of peers) socket.destroy();
  });

  it("release() closes the connections still waiting to authenticate", async () => {
    const plane = await ControlPlane.acquire(LOOPBACK, recordingLogger([]), { handshakeWindow: 60_000 });
    const waiting = await Promise.all(Array.from({ length: 20 }, () => rawConnection(portOf(plane))));
    const closed = Promise.all(waiting.map(closing));
    await plane.release();
    for (const result of await closed) expect(result.received).toBe(0);
  });

  it("closes connections beyond the cap at once, and a runner still boots and serves calls", async () => {
    const cap = 16;
    const handshakeWindow = 1_500;
    const plane = await listener({ maxUnauthenticated: cap, handshakeWindow });
    const port = portOf(plane);
    let boots = 0;
    const { add } = makePool({ name: "flood-cap", max: 1, onGrowStart: () => (boots += 1) });

    const held = await Promise.all(Array.from({ length: cap }, () => rawConnection(port)));
    const heldClosed = held.map(closing);
    const excess = await Promise.all(Array.from({ length: 20 }, () => rawConnection(port)));
    const excessClosed = await Promise.all(excess.map(closing));
    for (const closed of excessClosed) {
      expect(closed.received).toBe(0);
      expect(closed.after).toBeLessThan(handshakeWindow / 2);
    }
    // The runner dials while the cap is full; it retries and gets in once the held sockets expire.
    await expect(add(1, 2)).resolves.toBe(3);
    const heldResults = await Promise.all(heldClosed);
    for (const closed of heldResults) expect(closed.after).toBeGreaterThanOrEqual(handshakeWindow - 100);
    // The accepted runner connection is past the handshake window and is not cut: the same runner serves.
    await expect(add(2, 3)).resolves.toBe(5);
    expect(boots).toBe(1);
    console.log(
      `[flood] cap ${cap}: ${excess.length} excess connections closed after at most ${Math.max(...excessClosed.map((closed) => closed.after))} ms; held ones after ${Math.min(...heldResults.map((closed) => closed.after))}-${Math.max(...heldResults.map((closed) => closed.after))} ms`,
    );
  });

  for (const [name, frame] of [
    ["a frame with a reserved opcode", Buffer.from([0x83, 0x80, 1, 2, 3, 4])],
    ["an unmasked frame", Buffer.from([0x81, 0x02, 0x68, 0x69])],
  ] as const) {
    it(`closes an accepted connection that sends ${name} before its hello`, async () => {
      const plane = await listener({ handshakeWindow: 300 });
      let errorListenersAtConnect = 0;
      const accepted = new Promise<WebSocket>((resolve) =>
        plane.expect("r-1", "token", (socket) => {
          errorListenersAtConnect = socket.listenerCount("error");
          resolve(socket);
        }),
      );
      const client = new WebSocket(plane.url, { headers: { authorization: "Bearer token", "x-flame-runner": "r-1" } });
      client.on("error", () => undefined);
      const clientClosed = new Promise((resolve) => client.once("close", resolve));
      await once(client, "open");
      const server = await accepted;
      // Not events.once: it would reject on the 'error' the parent's socket is expected to emit.
      const serverClosed = new Promise((resolve) => server.once("close", resolve));
      (client as unknown as { _socket: Socket })._socket.write(frame);
      await Promise.all([serverClosed, clientClosed]);
      expect(errorListenersAtConnect).toBeGreaterThan(0);
    });
  }

  it("logs refusals at warn with the peer address, rate-limited, and never the token", async () => {
    const lines: LogLine[] = [];
    const plane = await listener({ maxUnauthenticated: 8 }, lines);
    const port = portOf(plane);
    plane.expect("r-logged", "the-real-token", () => undefined);

    const peers = new Set<string>();
    for (let attempt = 0; attempt < 10; attempt += 1) {
      const socket = await rawConnection(port);
      peers.add(`127.0.0.1:${socket.localPort}`);
      const closed = closing(socket);
      socket.write(upgradeRequest({ authorization: "Bearer attacker-secret-123", "x-flame-runner": "r-logged" }));
      const { received } = await closed;
      expect(received).toBeGreaterThan(0); // the 401, then the parent closed the socket
    }
    // Eight held sockets fill the cap; the ninth is refused for it.
    const held = await Promise.all(Array.from({ length: 8 }, () => rawConnection(port)));
    const heldClosed = held.map(closing);
    const over = await rawConnection(port);
    const overPeer = `127.0.0.1:${over.localPort}`;
    await closing(over);
    for (const socket of held) socket.destroy();
    await Promise.all(heldClosed);

    const warnings = lines.filter((line) => line.level === "warn");
    const unauthorized = warnings.filter((line) => line.fields.reason === "unauthorized");
    expect(unauthorized).toHaveLength(1);
    expect(peers).toContain(unauthorized[0]!.fields.peer);
    const capped = warnings.filter((line) => line.fields.reason === "connection-limit");
    expect(capped).toHaveLength(1);
    expect(capped[0]!.fields.peer).toBe(overPeer);
    const everything = JSON.stringify(lines);
    expect(everything).not.toContain("attacker-secret-123");
    expect(everything).not.toContain("the-real-token");
    expect(everything.toLowerCase()).not.toContain("bearer");
  });
});
