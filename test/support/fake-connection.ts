/**
 * A runner's connection without a socket, for the fast tests of the
 * Scheduler: it speaks the real protocol (frames are encoded and decoded with
 * the codec) to a Runner, and the test decides when each call answers.
 */
import { EventEmitter } from "node:events";
import type { WebSocket } from "ws";
import { decodeParentMessage, encodeMessage, forEachBatched, isBatch, type DecodedCall } from "../../src/protocol/codec.js";

export class FakeConnection extends EventEmitter {
  readyState = 1;
  readonly OPEN = 1;
  /** Calls the "runner" is running, by id. */
  readonly running = new Map<number, DecodedCall>();
  /** Call ids the parent cancelled, in order. */
  readonly cancelled: number[] = [];
  shutdownRequested = false;

  /** The Runner sends frames here (a batch is read frame by frame). */
  send(frame: Buffer): void {
    if (isBatch(frame)) return forEachBatched(frame, (inner) => this.send(inner));
    const message = decodeParentMessage(frame);
    switch (message.type) {
      case "call":
        this.running.set(message.callId, message);
        return;
      case "cancel":
        this.cancelled.push(message.callId);
        return;
      case "idle-check":
        this.reply(encodeMessage({ type: "idle-check-reply", checkId: message.checkId, shutdown: true }));
        return;
      case "shutdown":
        this.shutdownRequested = true;
        return;
    }
  }

  /** Answers a running call with `value`. */
  answer(callId: number, value: unknown): void {
    this.running.delete(callId);
    this.reply(encodeMessage({ type: "result", callId, ok: true, value }));
  }

  /** Answers every running call with its own id. */
  answerAll(): void {
    for (const callId of [...this.running.keys()]) this.answer(callId, callId);
  }

  ping(): void {
    this.emit("pong");
  }

  terminate(): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.emit("close", 1006, Buffer.alloc(0));
  }

  close(): void {
    this.terminate();
  }

  /** As the Runner expects its socket. */
  asSocket(): WebSocket {
    return this as unknown as WebSocket;
  }

  private reply(frame: Buffer): void {
    this.emit("message", frame, true);
  }
}
