/**
 * A container's environment, resolved as the kubelet resolves it: `envFrom`
 * sources first, then `env` (later entries win), Secret and ConfigMap
 * references looked up at start, `fieldRef` from the pod, and `$(VAR)`
 * references expanded. A missing Secret, ConfigMap or key that is not
 * `optional` is the kubelet's CreateContainerConfigError, with its message.
 */
import type { KubernetesObject } from "./selectors.js";

/** Where references are looked up: the store's Secrets and ConfigMaps. */
export type ReferenceLookup = (resource: "secrets" | "configmaps", namespace: string, name: string) => KubernetesObject | undefined;

/** A container's variables, or the kubelet's CreateContainerConfigError message saying which reference is missing. */
export type ResolvedEnvironment = { ok: true; env: Record<string, string> } | { ok: false; message: string };

interface KeySelector {
  name?: string;
  key: string;
  optional?: boolean;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: KeySelector;
    configMapKeyRef?: KeySelector;
    fieldRef?: { fieldPath: string };
    resourceFieldRef?: { resource: string; divisor?: string };
  };
}

interface EnvFromSource {
  prefix?: string;
  secretRef?: { name?: string; optional?: boolean };
  configMapRef?: { name?: string; optional?: boolean };
}

/** The container's own variables (without the base environment); `pod` is the stored Pod. */
export function resolveContainerEnvironment(pod: KubernetesObject, container: Record<string, any>, lookup: ReferenceLookup): ResolvedEnvironment {
  const namespace = pod.metadata.namespace!;
  const env: Record<string, string> = {};
  for (const source of (container.envFrom ?? []) as EnvFromSource[]) {
    const reference = source.secretRef ?? source.configMapRef;
    const resource = source.secretRef ? "secrets" : "configmaps";
    if (!reference) continue;
    const found = lookup(resource, namespace, reference.name ?? "");
    if (!found) {
      if (reference.optional) continue;
      return { ok: false, message: `${resource === "secrets" ? "secret" : "configmap"} "${reference.name ?? ""}" not found` };
    }
    for (const [key, value] of Object.entries(valuesOf(resource, found))) env[`${source.prefix ?? ""}${key}`] = value;
  }
  for (const variable of (container.env ?? []) as EnvVar[]) {
    const from = variable.valueFrom;
    if (!from) {
      env[variable.name] = expand(variable.value ?? "", env);
      continue;
    }
    const selector = from.secretKeyRef ?? from.configMapKeyRef;
    if (selector) {
      const resource = from.secretKeyRef ? "secrets" : "configmaps";
      const found = lookup(resource, namespace, selector.name ?? "");
      const kind = resource === "secrets" ? "Secret" : "ConfigMap";
      if (!found) {
        if (selector.optional) continue;
        return { ok: false, message: `${resource === "secrets" ? "secret" : "configmap"} "${selector.name ?? ""}" not found` };
      }
      const values = valuesOf(resource, found);
      if (!Object.hasOwn(values, selector.key)) {
        if (selector.optional) continue;
        return { ok: false, message: `couldn't find key ${selector.key} in ${kind} ${namespace}/${selector.name ?? ""}` };
      }
      env[variable.name] = values[selector.key]!;
      continue;
    }
    if (from.fieldRef) env[variable.name] = podField(pod, from.fieldRef.fieldPath);
    else if (from.resourceFieldRef) env[variable.name] = resourceField(container, from.resourceFieldRef.resource);
  }
  return { ok: true, env };
}

/** `$(NAME)` replaced by NAME's value where defined (`$$(` stays a literal `$(`), as in command, args and env values. */
export function expand(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (whole, name: string | undefined) => {
    if (whole === "$$") return "$";
    return name !== undefined && Object.hasOwn(env, name) ? env[name]! : whole;
  });
}

function valuesOf(resource: "secrets" | "configmaps", object: KubernetesObject): Record<string, string> {
  if (resource === "configmaps") return { ...((object.data ?? {}) as Record<string, string>) };
  return Object.fromEntries(Object.entries((object.data ?? {}) as Record<string, string>).map(([key, value]) => [key, Buffer.from(value, "base64").toString("utf8")]));
}

function podField(pod: KubernetesObject, fieldPath: string): string {
  const spec = (pod.spec ?? {}) as Record<string, any>;
  const status = (pod.status ?? {}) as Record<string, any>;
  const bracket = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (bracket) return String((pod.metadata[bracket[1]!] as Record<string, string> | undefined)?.[bracket[2]!] ?? "");
  const fields: Record<string, unknown> = {
    "metadata.name": pod.metadata.name,
    "metadata.namespace": pod.metadata.namespace,
    "metadata.uid": pod.metadata.uid,
    "spec.nodeName": spec.nodeName,
    "spec.serviceAccountName": spec.serviceAccountName,
    "status.hostIP": status.hostIP,
    "status.hostIPs": (status.hostIPs as { ip: string }[] | undefined)?.map((entry) => entry.ip).join(","),
    "status.podIP": status.podIP,
    "status.podIPs": (status.podIPs as { ip: string }[] | undefined)?.map((entry) => entry.ip).join(","),
  };
  return String(fields[fieldPath] ?? "");
}

/** A container's limit (else request) for `resource`, e.g. "limits.cpu"; "" when it sets none. */
function resourceField(container: Record<string, any>, resource: string): string {
  const [kind, name] = resource.split(".") as [string, string];
  return String(container.resources?.[kind]?.[name] ?? "");
}
