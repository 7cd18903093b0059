/**
 * What a request asks for, as the API server's request-info resolver and
 * authorizer see it: the verb (get, list, watch, create, update, patch,
 * delete, deletecollection) from the method, path and `watch` parameter; the
 * group, resource, subresource, namespace and name from the path; and the
 * operation name tests use with `failNext` ("createPod", "watchPods", ...).
 */
import type { DeleteOptions } from "./cluster.js";
import type { RequestAttributes, Verb } from "./rbac.js";
import { RESOURCES, unknownResource, type ResourceType } from "./resources.js";
import { ApiError, badRequest, invalid, type StatusReason } from "./status.js";

/** An answer forced on the next requests of an operation. */
export interface ApiFault {
  /** HTTP status: 409 (Conflict), 429 (TooManyRequests), 500 (InternalError), 503 (ServiceUnavailable), 504, ... */
  status: number;
  /** How many requests get it. Default 1. */
  times?: number;
  /** Retry-After header and details.retryAfterSeconds, in seconds. Default 1 for 429, else none. */
  retryAfter?: number;
  /** The Status message. Default: the API server's for the status. */
  message?: string;
}

/** A resource request, resolved. */
export interface Target {
  attributes: RequestAttributes;
  resource: ResourceType | undefined;
  operation: string;
}

/** The authorizer's view of a resource request, from its method and path. */
export function parseTarget(method: string, url: URL): Target {
  const parts = url.pathname.split("/").filter(Boolean).map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw badRequest("malformed path");
    }
  });
  let group = "";
  let rest: string[];
  if (parts[0] === "api" && parts[1] === "v1") rest = parts.slice(2);
  else if (parts[0] === "apis" && parts.length >= 3) {
    group = parts[1]!;
    rest = parts.slice(3);
  } else throw unknownResource();
  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length >= 3 && !["status", "finalize"].includes(rest[2]!)) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [resourceName, name, subresource, ...extra] = rest;
  if (!resourceName || extra.length > 0) throw unknownResource();
  const resource = group === "" ? RESOURCES[resourceName] : undefined;
  const isReview = group === "authorization.k8s.io" && parts[2] === "v1" && resourceName === "selfsubjectaccessreviews" && !name;
  if (!resource && !isReview) throw unknownResource();
  if (resource?.namespaced === false && namespace !== undefined) throw unknownResource();
  const watching = ["1", "true"].includes(url.searchParams.get("watch") ?? "");
  const verbs: Record<string, Verb | undefined> = name
    ? { GET: watching ? "watch" : "get", PUT: "update", PATCH: "patch", DELETE: "delete", POST: subresource ? "create" : undefined }
    : { GET: watching ? "watch" : "list", POST: "create", DELETE: "deletecollection" };
  const verb = verbs[method];
  if (!verb || (resource && resource.namespaced && !namespace && !name && verb !== "list" && verb !== "watch")) throw methodNotAllowed();
  if (resource?.namespaced && !namespace && name) throw unknownResource();
  const attributes: RequestAttributes = {
    verb,
    group,
    resource: resourceName,
    ...(subresource ? { subresource } : {}),
    ...(namespace !== undefined ? { namespace } : {}),
    ...(name !== undefined ? { name } : {}),
  };
  const kind = isReview ? "SelfSubjectAccessReview" : resource!.kind;
  return { attributes, resource, operation: operationName(verb, kind, subresource) };
}

/** The operation name of a request (what `failNext` takes): verb, kind (plural for collections), subresource. */
function operationName(verb: Verb, kind: string, subresource: string | undefined): string {
  const plural = verb === "list" || verb === "watch" || verb === "deletecollection";
  return `${verb === "deletecollection" ? "deleteCollectionOf" : verb}${kind}${plural ? "s" : ""}${subresource ? subresource[0]!.toUpperCase() + subresource.slice(1) : ""}`;
}

let operations: Set<string> | undefined;

/** Every operation the emulator serves, by name. */
export function knownOperations(): Set<string> {
  operations ??= new Set([
    ...Object.values(RESOURCES).flatMap((resource) => resource.verbs.map((verb) => operationName(verb as Verb, resource.kind, undefined))),
    operationName("get", "Pod", "log"),
    operationName("get", "Pod", "status"),
    operationName("create", "SelfSubjectAccessReview", undefined),
  ]);
  return operations;
}

/** DeleteOptions from a DELETE's body or query parameters (the body wins), checked as the API server checks them. */
export function deleteOptions(body: unknown, query: URLSearchParams): DeleteOptions {
  const options: DeleteOptions = {};
  const fromBody = (body ?? {}) as Record<string, unknown>;
  if (typeof fromBody !== "object" || Array.isArray(fromBody)) throw badRequest("the body of a delete must be a DeleteOptions object");
  const grace = fromBody.gracePeriodSeconds ?? query.get("gracePeriodSeconds") ?? undefined;
  if (grace !== undefined && grace !== null) {
    const seconds = Number(grace);
    if (!Number.isInteger(seconds)) throw badRequest(`invalid gracePeriodSeconds ${JSON.stringify(grace)}`);
    // A negative grace period means "the object's default", as the API server reads it.
    if (seconds >= 0) options.gracePeriodSeconds = seconds;
  }
  const policy = fromBody.propagationPolicy ?? query.get("propagationPolicy") ?? undefined;
  if (policy !== undefined && policy !== null) {
    if (!["Background", "Foreground", "Orphan"].includes(String(policy))) throw invalid("DeleteOptions", "", [{ field: "propagationPolicy", message: `Unsupported value: "${String(policy)}": supported values: "Foreground", "Background", "Orphan", "nil"` }]);
    options.propagationPolicy = policy as DeleteOptions["propagationPolicy"];
  }
  if (fromBody.orphanDependents === true && !options.propagationPolicy) options.propagationPolicy = "Orphan";
  const preconditions = fromBody.preconditions as DeleteOptions["preconditions"] | undefined;
  if (preconditions && typeof preconditions === "object") options.preconditions = preconditions;
  return options;
}

const FAULT_REASONS: Record<number, [StatusReason, string]> = {
  400: ["BadRequest", "the server rejected our request for an unknown reason"],
  403: ["Forbidden", "forbidden: emulated refusal"],
  404: ["NotFound", "the server could not find the requested resource"],
  409: ["Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again"],
  410: ["Expired", "too old resource version"],
  422: ["Invalid", "the object is invalid (emulated)"],
  429: ["TooManyRequests", "Too many requests, please try again later."],
  500: ["InternalError", "Internal error occurred: emulated failure"],
  503: ["ServiceUnavailable", "the server is currently unable to handle the request"],
  504: ["Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request"],
};

/** The Status error an injected fault answers with, as the API server words that status. */
export function faultError(fault: ApiFault, attributes: RequestAttributes): ApiError {
  const [reason, text] = FAULT_REASONS[fault.status] ?? ["InternalError", `emulated failure (HTTP ${fault.status})`];
  const retryAfter = fault.retryAfter ?? (fault.status === 429 ? 1 : undefined);
  return new ApiError(
    fault.status,
    reason,
    fault.message ?? text,
    { ...(attributes.name ? { name: attributes.name } : {}), kind: attributes.resource, ...(retryAfter !== undefined ? { retryAfterSeconds: retryAfter } : {}) },
    retryAfter !== undefined ? { "retry-after": String(retryAfter) } : {},
  );
}

/** 405, for a verb the resource does not serve. */
export function methodNotAllowed(): ApiError {
  return new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
}

