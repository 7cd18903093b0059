/**
 * Label and field selectors, parsed as the API server parses them (so a
 * selector real Kubernetes refuses is refused here too) and matched against
 * stored objects.
 */
import { badRequest } from "./status.js";

/** Decides whether an object is selected. */
export type Selector = (object: KubernetesObject) => boolean;

/** Any stored object: what the emulator needs of it is its metadata. */
export interface KubernetesObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid: string;
    resourceVersion: string;
    labels?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
    deletionTimestamp?: string;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/** Whether `key` is a valid label key (an optional DNS-subdomain prefix, a name of at most 63 characters). */
export function isLabelKey(key: string): boolean {
  return key.length <= 316 && LABEL_KEY.test(key);
}

/** Whether `value` is a valid label value (at most 63 characters, alphanumeric at both ends). */
export function isLabelValue(value: string): boolean {
  return value.length <= 63 && LABEL_VALUE.test(value);
}

/** Parses a `labelSelector` query parameter; throws a 400 ApiError when malformed. */
export function parseLabelSelector(text: string | null): Selector {
  if (!text || text.trim() === "") return () => true;
  const tests = splitOutsideParentheses(text).map(parseRequirement);
  return (object) => {
    const labels = object.metadata.labels ?? {};
    return tests.every((test) => test(labels));
  };
}

function parseRequirement(raw: string): (labels: Record<string, string>) => boolean {
  const text = raw.trim();
  const fail = () => badRequest(`unable to parse requirement: ${JSON.stringify(text)}: not a valid label selector requirement`);
  let match = /^!\s*(\S+)$/.exec(text);
  if (match) {
    const key = checkedKey(match[1]!, fail);
    return (labels) => !Object.hasOwn(labels, key);
  }
  match = /^(\S+?)\s+(in|notin)\s*\(([^()]*)\)$/.exec(text);
  if (match) {
    const key = checkedKey(match[1]!, fail);
    const values = new Set(match[3]!.split(",").map((value) => checkedValue(value.trim(), fail)));
    if (match[2] === "in") return (labels) => Object.hasOwn(labels, key) && values.has(labels[key]!);
    return (labels) => !Object.hasOwn(labels, key) || !values.has(labels[key]!);
  }
  match = /^([^=!<>\s]+)\s*(==|=|!=|<|>)\s*([^=!<>\s]*)$/.exec(text);
  if (match) {
    const key = checkedKey(match[1]!, fail);
    const operator = match[2]!;
    const value = checkedValue(match[3]!, fail);
    if (operator === "!=") return (labels) => labels[key] !== value;
    if (operator === "<" || operator === ">") {
      const bound = Number(value);
      if (!/^-?\d+$/.test(value)) throw badRequest(`unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: ${value}`);
      return (labels) => Object.hasOwn(labels, key) && /^-?\d+$/.test(labels[key]!) && (operator === "<" ? Number(labels[key]) < bound : Number(labels[key]) > bound);
    }
    return (labels) => labels[key] === value;
  }
  const key = checkedKey(text, fail);
  return (labels) => Object.hasOwn(labels, key);
}

function checkedKey(key: string, fail: () => Error): string {
  if (!isLabelKey(key)) throw fail();
  return key;
}

function checkedValue(value: string, fail: () => Error): string {
  if (!isLabelValue(value)) throw fail();
  return value;
}

function splitOutsideParentheses(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = "";
  for (const character of text) {
    if (character === "(") depth += 1;
    if (character === ")") depth -= 1;
    if (character === "," && depth === 0) {
      parts.push(current);
      current = "";
    } else current += character;
  }
  parts.push(current);
  return parts;
}

/** The fields each resource can be selected by, as the API server registers them. */
const SELECTABLE_FIELDS: Record<string, string[]> = {
  pods: ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"],
  secrets: ["type"],
  events: [
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
  ],
  namespaces: ["status.phase"],
};

/** Parses a `fieldSelector` for `resource`; throws a 400 ApiError for a malformed one or an unsupported field. */
export function parseFieldSelector(resource: string, text: string | null): Selector {
  if (!text || text.trim() === "") return () => true;
  const allowed = new Set(["metadata.name", "metadata.namespace", ...(SELECTABLE_FIELDS[resource] ?? [])]);
  const tests = text.split(",").map((raw) => {
    const match = /^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(raw);
    if (!match) throw badRequest(`invalid selector: '${text}'; can't understand '${raw}'`);
    const [, field, operator, value] = match as unknown as [string, string, string, string];
    if (!allowed.has(field)) throw badRequest(`field label not supported: ${field}`);
    return (object: KubernetesObject) => {
      const actual = fieldValue(object, field);
      return operator === "!=" ? actual !== value : actual === value;
    };
  });
  return (object) => tests.every((test) => test(object));
}

/** A field's value as a string, as field selectors compare it ("" when absent). */
function fieldValue(object: KubernetesObject, path: string): string {
  if (path === "source") return String((object as { source?: { component?: string } }).source?.component ?? "");
  let value: unknown = object;
  for (const part of path.split(".")) value = value && typeof value === "object" ? (value as Record<string, unknown>)[part] : undefined;
  return value === undefined || value === null ? "" : String(value);
}
