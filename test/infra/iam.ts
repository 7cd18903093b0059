/**
 * Just enough IAM policy evaluation for the infra tests: does a policy allow
 * an action on a resource, given the request's condition keys? Allow
 * statements only (the template has no Deny), wildcards in actions and
 * resources, and the condition operators the template uses (StringEquals,
 * Null). Any other operator is an error, so that a template that grows one
 * cannot pass a check this evaluator does not understand.
 */
import type { PolicyDocument } from "./aws-query.js";

/** One AWS request, as IAM authorizes it. */
export interface AuthorizationRequest {
  action: string;
  /** The resource's ARN; "*" for actions that do not take one (DescribeInstances). */
  resource: string;
  /** Condition keys of the request, e.g. { "ec2:CreateAction": "RunInstances" }. */
  context?: Record<string, string>;
}

const list = (value: string | string[]): string[] => (Array.isArray(value) ? value : [value]);

/** IAM's wildcards: `*` any run of characters, `?` one; case-sensitive except for actions. */
function wildcard(pattern: string, value: string, ignoreCase = false): boolean {
  const regex = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".");
  return new RegExp(`^${regex}$`, ignoreCase ? "i" : "").test(value);
}

function conditionsHold(condition: Record<string, Record<string, string | string[]>> | undefined, context: Record<string, string>): boolean {
  for (const [operator, keys] of Object.entries(condition ?? {})) {
    for (const [key, expected] of Object.entries(keys)) {
      const actual = context[key];
      if (operator === "StringEquals") {
        if (actual === undefined || !list(expected).includes(actual)) return false;
      } else if (operator === "Null") {
        const mustBeAbsent = list(expected)[0] === "true";
        if ((actual === undefined) !== mustBeAbsent) return false;
      } else {
        throw new Error(`condition operator ${operator} is not understood by this test's evaluator`);
      }
    }
  }
  return true;
}

/** The Sids (or indexes) of the statements that allow `request`; empty when it is denied. */
export function allowingStatements(policy: PolicyDocument, request: AuthorizationRequest): string[] {
  return policy.Statement.flatMap((statement, index) => {
    if (statement.Effect !== "Allow") throw new Error("this evaluator handles Allow statements only");
    const actionMatches = list(statement.Action).some((action) => wildcard(action, request.action, true));
    const resourceMatches = list(statement.Resource).some((resource) => wildcard(resource, request.resource));
    return actionMatches && resourceMatches && conditionsHold(statement.Condition, request.context ?? {}) ? [statement.Sid ?? String(index)] : [];
  });
}

/** Every action a policy names. */
export function policyActions(policy: PolicyDocument): string[] {
  return [...new Set(policy.Statement.flatMap((statement) => list(statement.Action)))].sort();
}
