/**
 * Turning whatever a function threw into a SerializedError that crosses the
 * wire. A thrown value is user data and may fight back: getters that throw,
 * revoked proxies, a `name` that is an object, properties that cannot be
 * cloned. Nothing here may throw, or one bad error would take its runner (and
 * every other call on it) down; what cannot be read becomes a placeholder.
 */
import { serialize } from "node:v8";
import type { SerializedError } from "./messages.js";

/** The encoder keeps this many levels of `cause`. */
const MAX_CAUSE_DEPTH = 8;

/** Turns anything thrown into a SerializedError, keeping what can be kept. Never throws. */
export function serializeError(thrown: unknown, kind: SerializedError["kind"] = "thrown", depth = 0): SerializedError {
  try {
    return describeThrown(thrown, kind, depth);
  } catch {
    return { kind, name: "UninspectableError", message: "the thrown value could not be inspected (a revoked proxy or a throwing getter)" };
  }
}

function describeThrown(thrown: unknown, kind: SerializedError["kind"], depth: number): SerializedError {
  if (!attempt(() => thrown instanceof Error, false)) {
    return { kind, name: "NonErrorThrown", message: safeString(thrown), properties: cloneable({ value: thrown }) };
  }
  const error = thrown as Error;
  const properties: Record<string, unknown> = {};
  for (const key of attempt(() => Object.keys(error), [] as string[])) {
    if (key === "cause") continue;
    properties[key] = attempt(() => (error as unknown as Record<string, unknown>)[key], "[unreadable property]");
  }
  const stack = attempt(() => error.stack, undefined);
  const serialized: SerializedError = {
    kind,
    name: asText(attempt(() => error.name, "Error"), "Error"),
    message: asText(attempt(() => error.message, "[unreadable message]"), "[unreadable message]"),
    stack: typeof stack === "string" ? stack : undefined,
    properties: cloneable(properties),
  };
  const cause = attempt(() => error.cause, "[unreadable cause]");
  if (cause !== undefined && depth < MAX_CAUSE_DEPTH) {
    serialized.cause = attempt(() => cause instanceof Error, false)
      ? serializeError(cause, "thrown", depth + 1)
      : (cloneable({ value: cause }) as { value: unknown });
  }
  return serialized;
}

/** Runs `read`, or gives `fallback` if it throws. */
function attempt<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback;
  }
}

function asText(value: unknown, fallback: string): string {
  if (typeof value === "string") return value;
  return value === undefined ? fallback : safeString(value);
}

/** Keeps only the entries that survive structured clone, so one odd property never loses the error. */
function cloneable(record: Record<string, unknown>): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    try {
      serialize(value);
      kept[key] = value;
    } catch {
      kept[key] = safeString(value);
    }
  }
  return kept;
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    try {
      return Object.prototype.toString.call(value);
    } catch {
      return "[unprintable value]";
    }
  }
}
