/**
 * Logging. The interface is pino's calling convention (`logger.info(fields, message)`),
 * so a pino or pino-compatible logger can be passed as the pool's `log` option as is.
 */
export interface Logger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

/** The built-in logger's levels; `silent` logs nothing. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** The level names the `log` option and FLAME_LOG_LEVEL accept. */
export const LOG_LEVELS = Object.keys(LEVELS) as LogLevel[];

export function isLogLevel(value: string): value is LogLevel {
  return Object.hasOwn(LEVELS, value);
}

/**
 * A logger that writes one line per entry to stderr, e.g.
 * `[flame thumbs/thumbs-3f2a] warn: runner exited`.
 */
export function consoleLogger(level: LogLevel = "info"): Logger {
  const threshold = LEVELS[level];
  const write = (entryLevel: Exclude<LogLevel, "silent">) => (fields: Record<string, unknown>, message: string) => {
    if (LEVELS[entryLevel] < threshold) return;
    const { pool, runnerId, ...rest } = fields;
    const tag = [pool, runnerId].filter(Boolean).join("/");
    const extra = Object.keys(rest).length > 0 ? ` ${formatFields(rest)}` : "";
    process.stderr.write(`[flame${tag ? ` ${tag}` : ""}] ${entryLevel}: ${message}${extra}\n`);
  };
  return { debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error") };
}

function formatFields(fields: Record<string, unknown>): string {
  return Object.entries(fields)
    .map(([key, value]) => `${key}=${value instanceof Error ? value.message : typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ");
}

/** Resolves the `log` option: a level name, `false` for silence, or a Logger. */
export function resolveLogger(option: Logger | LogLevel | false | undefined): Logger {
  if (option === undefined) return consoleLogger(defaultLevel());
  if (option === false) return consoleLogger("silent");
  if (typeof option === "string") return consoleLogger(option);
  return option;
}

function defaultLevel(): LogLevel {
  const fromEnv = process.env.FLAME_LOG_LEVEL as LogLevel | undefined;
  return fromEnv && isLogLevel(fromEnv) ? fromEnv : "info";
}

/** Adds fixed fields (pool, runner id) to every entry. */
export function childLogger(parent: Logger, bound: Record<string, unknown>): Logger {
  return {
    debug: (fields, message) => parent.debug({ ...bound, ...fields }, message),
    info: (fields, message) => parent.info({ ...bound, ...fields }, message),
    warn: (fields, message) => parent.warn({ ...bound, ...fields }, message),
    error: (fields, message) => parent.error({ ...bound, ...fields }, message),
  };
}
