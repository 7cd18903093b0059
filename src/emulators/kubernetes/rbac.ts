/**
 * RBAC as the emulator applies it: the rules of one Role bound to the
 * client's service account, matched as the RBAC authorizer matches them, and
 * the API server's wording when a request is refused. Every resource request
 * is described by the attributes the authorizer sees (verb, group,
 * resource, subresource, namespace, name), which tests compare with a Role.
 */
import { ApiError } from "./status.js";

/** One rule of a Role, as in `rules:` of rbac.authorization.k8s.io/v1. */
export interface PolicyRule {
  apiGroups: string[];
  /** Plural names, with subresources as "pods/log"; "*" for all. */
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

/** The verbs the API server derives from a request. */
export type Verb = "get" | "list" | "watch" | "create" | "update" | "patch" | "delete" | "deletecollection";

/** What the authorizer sees of a resource request. */
export interface RequestAttributes {
  verb: Verb;
  /** "" for the core group. */
  group: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

/** Whether `rules` allow the request, as RBAC decides: some rule matches every attribute. */
export function allows(rules: PolicyRule[], request: RequestAttributes): boolean {
  const resource = request.subresource ? `${request.resource}/${request.subresource}` : request.resource;
  return rules.some(
    (rule) =>
      matchesAny(rule.verbs, request.verb) &&
      matchesAny(rule.apiGroups, request.group) &&
      (rule.resources.includes("*") || rule.resources.includes(resource) || (request.subresource !== undefined && rule.resources.includes(`*/${request.subresource}`))) &&
      (!rule.resourceNames || rule.resourceNames.length === 0 || (request.name !== undefined && rule.resourceNames.includes(request.name))),
  );
}

function matchesAny(allowed: string[], value: string): boolean {
  return allowed.includes("*") || allowed.includes(value);
}

/** The 403 the API server answers, worded as its authorizer's refusal. */
export function forbidden(user: string, request: RequestAttributes): ApiError {
  const resource = request.subresource ? `${request.resource}/${request.subresource}` : request.resource;
  const qualified = request.group ? `${request.resource}.${request.group}` : request.resource;
  const subject = request.name ? `${qualified} "${request.name}"` : qualified;
  const scope = request.namespace ? `in the namespace "${request.namespace}"` : "at the cluster scope";
  return new ApiError(403, "Forbidden", `${subject} is forbidden: User "${user}" cannot ${request.verb} resource "${resource}" in API group "${request.group}" ${scope}`, {
    ...(request.name ? { name: request.name } : {}),
    ...(request.group ? { group: request.group } : {}),
    kind: request.resource,
  });
}
