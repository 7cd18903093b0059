/**
 * Frames sent in the same tick leave in one write (one syscall) instead of
 * one each. Under load, the write syscall per frame was the largest cost on
 * both sides (about a third of the parent's busy time); corking the socket
 * until the next tick batches them, and costs nothing when only one frame goes.
 *
 * `ws` exposes no cork, so this reaches for its underlying net.Socket
 * (`_socket`), which it has kept under that name across major versions.
 */
import type { WebSocket } from "ws";

const corked = new WeakSet<object>();

export function sendCoalesced(socket: WebSocket, frame: Buffer): void {
  const raw = (socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
  if (raw && !corked.has(raw)) {
    corked.add(raw);
    raw.cork();
    process.nextTick(() => {
      corked.delete(raw);
      raw.uncork();
    });
  }
  socket.send(frame, { binary: true });
}
