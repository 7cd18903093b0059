/**
 * Sends what app code prints with console.* on a runner to the parent's log,
 * tagged there with the pool and runner id. The output is still written
 * locally too, so a machine's own logs keep it.
 */
import { format } from "node:util";

type Level = "debug" | "info" | "warn" | "error";

const METHODS: Record<"debug" | "log" | "info" | "warn" | "error", Level> = {
  debug: "debug",
  log: "info",
  info: "info",
  warn: "warn",
  error: "error",
};

export function forwardConsole(send: (level: Level, text: string) => void): void {
  for (const [method, level] of Object.entries(METHODS) as [keyof typeof METHODS, Level][]) {
    const original = console[method].bind(console);
    console[method] = (...args: unknown[]) => {
      original(...args);
      send(level, format(...args));
    };
  }
}
