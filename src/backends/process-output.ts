/**
 * A runner process's stdout and stderr, read by the parent: each line goes to
 * the pool's log tagged with the runner (stdout at info, stderr at error), from
 * the first byte, before the runner has connected, and whatever wrote it
 * (console, process.stdout.write, a logger writing to fd 1). The last lines are
 * kept to explain an exit: they end up in the BootError or RunnerExitedError.
 */
import type { Readable } from "node:stream";
import type { Logger } from "../log.js";
import { settledWithin } from "../retry.js";

/** Bytes of output kept to explain how a runner ended. */
const TAIL_BYTES = 4_096;
/** A line longer than this is logged in pieces rather than held. */
const MAX_LINE = 16 * 1024;
/** How long an exited process's pipes get to deliver their last bytes. */
const DRAIN_WAIT = 200;

export class RunnerOutput {
  private tail = "";
  private readonly streams: Readable[] = [];

  constructor(
    private readonly log: Logger,
    private readonly runnerId: string,
  ) {}

  /** Reads `stream` line by line until it ends. */
  read(stream: Readable | null | undefined, name: "stdout" | "stderr"): void {
    if (!stream) return;
    this.streams.push(stream);
    stream.setEncoding("utf8");
    let partial = "";
    stream.on("data", (chunk: string) => {
      this.tail = (this.tail + chunk).slice(-TAIL_BYTES);
      partial += chunk;
      let newline: number;
      while ((newline = partial.indexOf("\n")) !== -1) {
        this.emit(name, partial.slice(0, newline));
        partial = partial.slice(newline + 1);
      }
      if (partial.length > MAX_LINE) {
        this.emit(name, partial);
        partial = "";
      }
    });
    stream.on("end", () => {
      if (partial) this.emit(name, partial);
      partial = "";
    });
    // A pipe that fails (the child vanished) has nothing more to say; its error must not be uncaught.
    stream.on("error", () => undefined);
    // Output must not keep the parent's event loop alive on its own.
    (stream as unknown as { unref?: () => void }).unref?.();
  }

  /** The last output, after giving the pipes a moment to deliver what the process wrote before it ended. */
  async lastOutput(): Promise<string> {
    const open = this.streams.filter((stream) => !stream.readableEnded && !stream.destroyed);
    if (open.length > 0) await settledWithin(Promise.all(open.map((stream) => new Promise((resolve) => stream.once("close", resolve)))), DRAIN_WAIT);
    return this.tail.trim();
  }

  /** Destroys the pipes (a spawn that failed). */
  destroy(): void {
    for (const stream of this.streams) stream.destroy();
  }

  private emit(name: "stdout" | "stderr", line: string): void {
    const text = line.endsWith("\r") ? line.slice(0, -1) : line;
    try {
      if (name === "stdout") this.log.info({ runnerId: this.runnerId, stream: name }, text);
      else this.log.error({ runnerId: this.runnerId, stream: name }, text);
    } catch {
      // The user's logger failed: the line is lost, the parent carries on.
    }
  }
}
