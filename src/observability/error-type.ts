/**
 * The `error.type` of OpenTelemetry's semantic conventions: a low-cardinality
 * class of error, never its message. flame-ts' own errors give their stable
 * code; an exception the function threw on the runner gives its name there.
 */
export function errorType(error: unknown): string {
  if (typeof error !== "object" || error === null) return "_OTHER";
  const { code, remoteName, name } = error as { code?: unknown; remoteName?: unknown; name?: unknown };
  // A RemoteError's code (FLAME_REMOTE_ERROR) says less than the name of what the function threw.
  if (typeof remoteName === "string" && remoteName) return remoteName;
  if (typeof code === "string" && code.startsWith("FLAME_")) return code;
  if (typeof name === "string" && name) return name;
  return "_OTHER";
}
