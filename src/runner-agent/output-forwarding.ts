/**
 * Sends what a runner writes to stdout and stderr to the parent's log, where
 * it is tagged with the pool and runner id, for backends that cannot read the
 * runner's output themselves (remote machines). The output is still written
 * locally too, so the machine's own logs keep it.
 *
 * Writes are caught at the streams (`process.stdout.write`), so `console.*`,
 * raw writes and loggers writing through the streams all arrive; `console.*`
 * keeps its level (warn stays warn), other stdout lines are info and stderr
 * lines error. A logger that writes to file descriptor 1 directly (pino's
 * default destination) bypasses the streams: on such backends its lines stay
 * in the machine's logs. ProcessBackend reads the pipes instead and sets
 * FLAME_OUTPUT_CAPTURED, and then nothing is forwarded from here.
 */
type Level = "debug" | "info" | "warn" | "error";

const CONSOLE_LEVELS: Record<"debug" | "log" | "info" | "warn" | "error", Level> = {
  debug: "debug",
  log: "info",
  info: "info",
  warn: "warn",
  error: "error",
};

/** A line longer than this is forwarded in pieces rather than held. */
const MAX_LINE = 16 * 1024;

type StreamName = "stdout" | "stderr";

/** The streams' own writes, kept when they are intercepted: lines of worker threads are written through them. */
const originalWrites = new Map<StreamName, (chunk: string) => boolean>();

/** Writes `text` to this process's stdout or stderr without forwarding it (whoever forwards it does so themselves). */
export function writeLocally(stream: StreamName, text: string): void {
  const write = originalWrites.get(stream);
  if (write) write(text);
  else process[stream].write(text);
}

export function forwardOutput(send: (level: Level, text: string, stream: StreamName) => void): void {
  // Set while a console method writes, so its line keeps the method's level.
  let consoleLevel: Level | undefined;
  for (const [method, level] of Object.entries(CONSOLE_LEVELS) as [keyof typeof CONSOLE_LEVELS, Level][]) {
    const original = console[method].bind(console);
    console[method] = (...args: unknown[]) => {
      const outer = consoleLevel;
      consoleLevel = level;
      try {
        original(...args);
      } finally {
        consoleLevel = outer;
      }
    };
  }
  const intercept = (name: StreamName, streamLevel: Level) => {
    const stream = process[name];
    const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
    originalWrites.set(name, write);
    let partial = "";
    stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      const level = consoleLevel ?? streamLevel;
      partial += typeof chunk === "string" ? chunk : Buffer.isBuffer(chunk) || chunk instanceof Uint8Array ? Buffer.from(chunk).toString("utf8") : String(chunk);
      let newline: number;
      while ((newline = partial.indexOf("\n")) !== -1) {
        send(level, partial.slice(0, newline), name);
        partial = partial.slice(newline + 1);
      }
      if (partial.length > MAX_LINE) {
        send(level, partial, name);
        partial = "";
      }
      return write(chunk, ...rest);
    }) as typeof stream.write;
  };
  intercept("stdout", "info");
  intercept("stderr", "error");
}
