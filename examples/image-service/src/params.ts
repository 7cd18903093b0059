/**
 * Query parameters of the image endpoints, checked in the HTTP process before
 * any runner is involved: a bad request costs a 400, never a boot.
 */
import type { FractalRequest } from "./render.js";

/** A request the service refuses with 400; the message says what to fix. */
export class BadRequestError extends Error {
  override readonly name = "BadRequestError";
}

/** Largest side of a rendered image or a thumbnail, in pixels. */
export const MAX_SIDE = 4096;
/** Largest rendered image, in pixels (a 2048x2048 square). */
export const MAX_PIXELS = 2048 * 2048;
export const MAX_ITERATIONS = 10_000;

/** `GET /fractal` parameters: `width`, `height`, `x`, `y`, `zoom`, `iterations`; all optional. */
export function parseFractalQuery(query: URLSearchParams): FractalRequest {
  rejectUnknown(query, ["width", "height", "x", "y", "zoom", "iterations"]);
  const width = integer(query, "width", 1, MAX_SIDE) ?? 512;
  const height = integer(query, "height", 1, MAX_SIDE) ?? Math.max(1, Math.round((width * 2) / 3));
  if (width * height > MAX_PIXELS) {
    throw new BadRequestError(`width x height is ${width * height} pixels; at most ${MAX_PIXELS} are rendered`);
  }
  const zoom = number(query, "zoom") ?? 1;
  if (!(zoom > 0 && zoom <= 1e13)) throw new BadRequestError(`"zoom" must be > 0 and <= 1e13, got ${query.get("zoom")}`);
  return {
    width,
    height,
    centerX: number(query, "x") ?? -0.75,
    centerY: number(query, "y") ?? 0,
    zoom,
    iterations: integer(query, "iterations", 1, MAX_ITERATIONS) ?? 500,
  };
}

/** `POST /thumbnail` parameters: `width` and/or `height` of the result. */
export function parseThumbnailQuery(query: URLSearchParams): { width?: number; height?: number } {
  rejectUnknown(query, ["width", "height"]);
  const width = integer(query, "width", 1, MAX_SIDE);
  const height = integer(query, "height", 1, MAX_SIDE);
  if (width === undefined && height === undefined) {
    throw new BadRequestError('give the thumbnail\'s "width", "height" or both, e.g. /thumbnail?width=200');
  }
  return { ...(width !== undefined ? { width } : {}), ...(height !== undefined ? { height } : {}) };
}

function rejectUnknown(query: URLSearchParams, accepted: string[]): void {
  for (const name of new Set(query.keys())) {
    if (!accepted.includes(name)) throw new BadRequestError(`unknown parameter "${name}" (accepted: ${accepted.join(", ")})`);
    if (query.getAll(name).length > 1) throw new BadRequestError(`parameter "${name}" is given more than once`);
  }
}

function number(query: URLSearchParams, name: string): number | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  const value = raw.trim() === "" ? NaN : Number(raw);
  if (!Number.isFinite(value)) throw new BadRequestError(`"${name}" must be a number, got ${JSON.stringify(raw)}`);
  return value;
}

function integer(query: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  const value = raw.trim() === "" ? NaN : Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new BadRequestError(`"${name}" must be an integer from ${min} to ${max}, got ${JSON.stringify(query.get(name))}`);
  }
  return value;
}
