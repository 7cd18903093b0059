/**
 * Reading a provider API's HTTP answers, the same way for every backend that
 * talks HTTP itself (Fly, Kubernetes): bodies that may not be JSON, fields
 * that may not be strings, headers that may repeat. What comes back is
 * untrusted; nothing here throws on it.
 */

/** Parsed JSON, or the raw text when the body is not JSON, or undefined when empty. */
export function parseBody(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** `body[key]` when the body is an object and that field a string. */
export function stringField(body: unknown, key: string): string | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const value = (body as Record<string, unknown>)[key];
  return typeof value === "string" ? value : undefined;
}

/** The first value of a header that may have been sent more than once. */
export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** A 2xx status. */
export function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}
