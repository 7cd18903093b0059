/**
 * Frames sent in the same tick leave together: up to MAX_BATCH_BYTES of
 * small frames travel as one WebSocket message (a batch frame, codec.ts), and
 * all of a tick's messages leave in one write. A lone frame still goes alone,
 * at the end of the tick it was sent in, so nothing waits for company.
 *
 * Under load the per-frame costs dominated both sides: a write syscall per
 * frame (about a third of the parent's busy time before frames were corked),
 * then ws' framing, its receiver and one 'message' event per call. A batch
 * pays them once for every call that left in the same tick.
 *
 * `ws` exposes no cork, so this reaches for its underlying net.Socket
 * (`_socket`), which it has kept under that name across major versions.
 */
import type { WebSocket } from "ws";
import { encodeBatch } from "./codec.js";

/** Most bytes of frames one batch carries (far below maxPayload). */
const MAX_BATCH_BYTES = 1024 * 1024;
/** A frame this large travels alone: copying it into a batch would cost more than its own message. */
const MAX_BATCHED_FRAME = 64 * 1024;

const outboxes = new Map<WebSocket, Buffer[]>();

/** Queues `frame` for `socket`; the tick's frames leave together at its end. */
export function sendCoalesced(socket: WebSocket, frame: Buffer): void {
  const outbox = outboxes.get(socket);
  if (outbox) {
    outbox.push(frame);
    return;
  }
  outboxes.set(socket, [frame]);
  process.nextTick(flushCoalesced, socket);
}

/** Sends what is queued for `socket` now (before a close frame, which must not overtake it). */
export function flushCoalesced(socket: WebSocket): void {
  const frames = outboxes.get(socket);
  if (!frames) return;
  outboxes.delete(socket);
  if (socket.readyState !== socket.OPEN) return;
  if (frames.length === 1) {
    socket.send(frames[0]!, { binary: true });
    return;
  }
  const raw = (socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
  raw?.cork();
  let batch: Buffer[] = [];
  let bytes = 0;
  const sendBatch = () => {
    if (batch.length === 1) socket.send(batch[0]!, { binary: true });
    else if (batch.length > 1) socket.send(encodeBatch(batch), { binary: true });
    batch = [];
    bytes = 0;
  };
  for (const frame of frames) {
    if (frame.byteLength > MAX_BATCHED_FRAME) {
      sendBatch();
      socket.send(frame, { binary: true });
      continue;
    }
    if (bytes + frame.byteLength > MAX_BATCH_BYTES) sendBatch();
    batch.push(frame);
    bytes += frame.byteLength + 4;
  }
  sendBatch();
  raw?.uncork();
}
