/**
 * The API server's error answers: a `Status` object whose `reason` and
 * `code` clients branch on (client-go's IsNotFound, IsConflict, ...), so each
 * is spelled as kube-apiserver spells it.
 */

/** Reasons the emulator answers with, as metav1.StatusReason names them. */
export type StatusReason =
  | "BadRequest"
  | "Unauthorized"
  | "Forbidden"
  | "NotFound"
  | "AlreadyExists"
  | "Conflict"
  | "Gone"
  | "Expired"
  | "Invalid"
  | "MethodNotAllowed"
  | "NotAcceptable"
  | "UnsupportedMediaType"
  | "RequestEntityTooLarge"
  | "TooManyRequests"
  | "InternalError"
  | "ServiceUnavailable"
  | "Timeout";

/** Who an error is about, as Status `details` says. */
export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  causes?: { reason?: string; message?: string; field?: string }[];
  retryAfterSeconds?: number;
}

/** An error answered as a Status; thrown by handlers, written by the server. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: StatusReason,
    message: string,
    readonly details?: StatusDetails,
    /** Extra response headers, e.g. Retry-After. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  /** The Status body the API server writes. */
  toStatus(): Record<string, unknown> {
    return statusObject(this.code, this.reason, this.message, this.details);
  }
}

/** A failure Status body. */
export function statusObject(code: number, reason: StatusReason, message: string, details?: StatusDetails): Record<string, unknown> {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

/** The success Status some deletes answer with. */
export function successStatus(details: StatusDetails): Record<string, unknown> {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details };
}

/** A resource as errors name it: "pods" in the core group, "deployments.apps" elsewhere. */
export function qualifiedResource(group: string, resource: string): string {
  return group ? `${resource}.${group}` : resource;
}

/** 404: `pods "x" not found`. */
export function notFound(group: string, resource: string, name: string): ApiError {
  return new ApiError(404, "NotFound", `${qualifiedResource(group, resource)} "${name}" not found`, { name, ...(group ? { group } : {}), kind: resource });
}

/** 409: `pods "x" already exists`. */
export function alreadyExists(group: string, resource: string, name: string): ApiError {
  return new ApiError(409, "AlreadyExists", `${qualifiedResource(group, resource)} "${name}" already exists`, { name, ...(group ? { group } : {}), kind: resource });
}

/** 400 BadRequest with `message`. */
export function badRequest(message: string): ApiError {
  return new ApiError(400, "BadRequest", message);
}

/** 422 with the field causes, message as the apiserver joins them: `Pod "x" is invalid: [a: ..., b: ...]`. */
export function invalid(kind: string, name: string, causes: { field: string; message: string }[]): ApiError {
  const joined = causes.map((cause) => `${cause.field}: ${cause.message}`);
  const message = `${kind} "${name}" is invalid: ${joined.length === 1 ? joined[0] : `[${joined.join(", ")}]`}`;
  return new ApiError(422, "Invalid", message, {
    name,
    kind,
    causes: causes.map((cause) => ({ reason: cause.message.startsWith("Required") ? "FieldValueRequired" : "FieldValueInvalid", message: cause.message, field: cause.field })),
  });
}
