/**
 * PATCH bodies: JSON merge patch (RFC 7386), which is what
 * `application/merge-patch+json` means. Strategic merge patch (kubectl's
 * default) is applied as a merge patch too: the same for maps and scalars,
 * but lists are replaced whole instead of merged by their keys.
 */
import { ApiError } from "./status.js";

const MERGE_TYPES = new Set(["application/merge-patch+json", "application/strategic-merge-patch+json"]);

/** Applies a PATCH body of `contentType` to a copy of `target`. */
export function applyPatch(target: Record<string, unknown>, patch: unknown, contentType: string | undefined): Record<string, unknown> {
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (!MERGE_TYPES.has(type)) {
    throw new ApiError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (the emulator does not apply ${type || "untyped"} patches)`);
  }
  if (!isPlainObject(patch)) throw new ApiError(400, "BadRequest", "the patch must be a JSON object");
  return mergePatch(structuredClone(target), patch) as Record<string, unknown>;
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const result: Record<string, unknown> = isPlainObject(target) ? target : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
