/**
 * Admission's bookkeeping on fake sockets and fake timers: the limits and
 * windows in milliseconds, without a listener (flood.test.ts has the real one).
 */
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Admission, peerAddress, type AdmissionLimits } from "../../src/control-plane/admission.js";
import type { RefusalReason } from "../../src/control-plane/refusal-log.js";

/** Just what Admission touches of a net.Socket. `stalled` ones never finish a write. */
class FakeSocket extends EventEmitter {
  remoteAddress = "10.0.0.9";
  remotePort = 4242;
  remoteFamily = "IPv4";
  writable = true;
  destroyed = false;
  written: string[] = [];

  constructor(private readonly stalled = false) {
    super();
  }

  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.writable = false;
    this.emit("close");
    return this;
  }

  end(data: string, onFinish: () => void): this {
    this.written.push(data);
    this.writable = false;
    if (!this.stalled) onFinish();
    return this;
  }

  get asSocket(): Socket {
    return this as unknown as Socket;
  }
}

const LIMITS: AdmissionLimits = { handshakeWindow: 5_000, maxUnauthenticated: 3, maxPendingUpgradesPerRunner: 2 };

let refusals: [RefusalReason, string][];
let admission: Admission;
beforeEach(() => {
  vi.useFakeTimers();
  refusals = [];
  admission = new Admission(LIMITS, (reason, peer) => refusals.push([reason, peer]));
});
afterEach(() => {
  admission.closeAll();
  vi.useRealTimers();
});

function admitted(stalled = false): FakeSocket {
  const socket = new FakeSocket(stalled);
  admission.admit(socket.asSocket);
  return socket;
}

describe("admission of unauthenticated connections", () => {
  it("guards every socket against errors from the moment it is accepted", () => {
    const socket = admitted();
    expect(socket.listenerCount("error")).toBe(1);
    expect(() => socket.emit("error", Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }))).not.toThrow();
  });

  it("destroys connections beyond the cap on arrival, without writing, and frees a slot when one closes", () => {
    const held = [admitted(), admitted(), admitted()];
    const over = admitted();
    expect(over.destroyed).toBe(true);
    expect(over.written).toEqual([]);
    expect(over.listenerCount("error")).toBe(1);
    expect(refusals).toEqual([["connection-limit", "10.0.0.9:4242"]]);
    held[0]!.destroy();
    expect(admitted().destroyed).toBe(false);
    expect(admission.unauthenticatedCount).toBe(3);
  });

  it("destroys a connection that is not authenticated within the handshake window, but not an accepted one", () => {
    const idle = admitted();
    const runner = admitted();
    admission.accepted(runner.asSocket);
    vi.advanceTimersByTime(LIMITS.handshakeWindow - 1);
    expect(idle.destroyed).toBe(false);
    vi.advanceTimersByTime(1);
    expect(idle.destroyed).toBe(true);
    expect(runner.destroyed).toBe(false);
    expect(refusals).toEqual([["handshake-window", "10.0.0.9:4242"]]);
    expect(admission.unauthenticatedCount).toBe(0);
  });

  it("answers a refused upgrade and destroys the socket once the answer is written", () => {
    const socket = admitted();
    admission.refuseUpgrade(socket.asSocket, "r-1", "HTTP/1.1 401 Unauthorized\r\n\r\n");
    expect(socket.written).toEqual(["HTTP/1.1 401 Unauthorized\r\n\r\n"]);
    expect(socket.destroyed).toBe(true);
    expect(refusals).toEqual([["unauthorized", "10.0.0.9:4242"]]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("answers a bounded number of refusals in flight per runner id; the rest are destroyed unanswered", () => {
    const stalled = [admitted(true), admitted(true), admitted(true)];
    admission.refuseUpgrade(stalled[0]!.asSocket, "r-1", "401");
    admission.refuseUpgrade(stalled[1]!.asSocket, "r-1", "401");
    admission.refuseUpgrade(stalled[2]!.asSocket, "r-1", "401");
    expect(stalled.map((socket) => socket.written)).toEqual([["401"], ["401"], []]);
    expect(stalled.map((socket) => socket.destroyed)).toEqual([false, false, true]);
    expect(refusals.map(([reason]) => reason)).toEqual(["unauthorized", "unauthorized", "runner-limit"]);
    // Another id has its own share.
    const other = admitted(true);
    admission.refuseUpgrade(other.asSocket, "", "401");
    expect(other.written).toEqual(["401"]);
    // Answers that never flush are cut after a short linger, well inside the handshake window.
    vi.advanceTimersByTime(1_000);
    expect([...stalled, other].every((socket) => socket.destroyed)).toBe(true);
    const again = admitted(true);
    admission.refuseUpgrade(again.asSocket, "r-1", "401");
    expect(again.written).toEqual(["401"]);
  });

  it("closeAll destroys every waiting connection and leaves no timer", () => {
    const sockets = [admitted(), admitted(true)];
    admission.refuseUpgrade(sockets[1]!.asSocket, "r-1", "401");
    admission.closeAll();
    expect(sockets.every((socket) => socket.destroyed)).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
    expect(admission.unauthenticatedCount).toBe(0);
  });

  it("names IPv6 peers with brackets", () => {
    const socket = new FakeSocket();
    socket.remoteAddress = "::1";
    socket.remoteFamily = "IPv6";
    expect(peerAddress(socket.asSocket)).toBe("[::1]:4242");
  });
});
