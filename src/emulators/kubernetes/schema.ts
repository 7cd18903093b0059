/**
 * Strict validation of the objects clients send, against the Kubernetes
 * OpenAPI schema compiled into the `kubernetes-models` package (its models'
 * `validate()`, standalone ajv code). Those validators check types, formats
 * and required fields but let unknown fields through, which the real API
 * server refuses under `fieldValidation=Strict` (kubectl's default), so the
 * unknown ones are found by watching which fields the validator reads: it
 * looks up every field its schema declares, so a field present in the
 * object that it never looked at is one the schema does not know.
 *
 * kubernetes-models is loaded on first use, so importing the emulator stays
 * cheap and the package is needed only when validation is on.
 */

/** The kinds with a schema: Pod, Secret, ConfigMap, SelfSubjectAccessReview. */
export type ValidatedKind = "Pod" | "Secret" | "ConfigMap" | "SelfSubjectAccessReview";

/**
 * Kinds the emulator validates, by the name of their kubernetes-models module.
 * Typed by hand: an inferred type would name kubernetes-models' own types in
 * the published declarations, which an app without that optional peer cannot compile.
 */
const MODEL_LOADERS: Record<ValidatedKind, () => Promise<Record<string, unknown>>> = {
  Pod: () => import("kubernetes-models/v1/Pod"),
  Secret: () => import("kubernetes-models/v1/Secret"),
  ConfigMap: () => import("kubernetes-models/v1/ConfigMap"),
  SelfSubjectAccessReview: () => import("kubernetes-models/authorization.k8s.io/v1/SelfSubjectAccessReview"),
};

/** What is wrong with an object: fields the schema does not know, and values it refuses. */
export interface SchemaProblems {
  /** Dotted paths as the API server prints them: `spec.containers[0].foo`. */
  unknownFields: string[];
  /** `{ field, message }` for each type, format or required-field error. */
  invalidFields: { field: string; message: string }[];
}

type ValidateFunction = (this: unknown) => void;

/** Thrown when validation is on but kubernetes-models cannot be loaded. */
export class MissingSchemaPackageError extends Error {
  constructor(switchName: string, cause: unknown) {
    super(
      `the Kubernetes emulator validates objects with the "kubernetes-models" package (version 4), which could not be loaded ` +
        `(${(cause as Error).message?.split("\n")[0]}); install it (npm install --save-dev kubernetes-models@4) or turn validation off with ${switchName}`,
      { cause },
    );
  }
}

/** Validators by kind, loaded once. */
export class SchemaValidator {
  private readonly validators = new Map<ValidatedKind, ValidateFunction>();

  private constructor() {}

  /** Loads every validator now, so a missing package fails at start and not on the first request. */
  static async load(switchName: string): Promise<SchemaValidator> {
    const validator = new SchemaValidator();
    try {
      for (const [kind, load] of Object.entries(MODEL_LOADERS) as [ValidatedKind, () => Promise<Record<string, unknown>>][]) {
        const module = await load();
        const model = module[kind] as { prototype: { validate: ValidateFunction } };
        validator.validators.set(kind, model.prototype.validate);
      }
    } catch (error) {
      throw new MissingSchemaPackageError(switchName, error);
    }
    return validator;
  }

  /** Checks `object` as a `kind`; an empty result means the API server would accept its shape. */
  check(kind: ValidatedKind, object: unknown): SchemaProblems {
    const validate = this.validators.get(kind)!;
    const visits: Visit[] = [];
    const probe = probeOf(object, "", visits);
    const invalidFields: SchemaProblems["invalidFields"] = [];
    try {
      validate.call(probe);
    } catch (error) {
      const errors = (error as { errors?: { instancePath?: string; message?: string; params?: { missingProperty?: string } }[] }).errors;
      if (!errors) throw error;
      for (const problem of errors) {
        const missing = problem.params?.missingProperty;
        const field = fieldPath(problem.instancePath ?? "", missing);
        invalidFields.push({ field, message: missing ? "Required value" : `Invalid value: ${problem.message ?? "invalid"}` });
      }
    }
    // An object whose fields the validator never looked at is free-form in the schema (say, a RawExtension).
    const unknownFields = visits.flatMap(({ path, keys, read }) =>
      read.size === 0 ? [] : keys.filter((name) => !read.has(name)).map((name) => (path ? `${path}.${name}` : name)),
    );
    return { unknownFields, invalidFields };
  }
}

interface Visit {
  path: string;
  keys: string[];
  read: Set<string>;
}

/** A copy of `value` whose objects record which of their fields are read. */
function probeOf(value: unknown, path: string, visits: Visit[]): unknown {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((item, index) => probeOf(item, `${path}[${index}]`, visits));
  const visit: Visit = { path, keys: Object.keys(value), read: new Set() };
  visits.push(visit);
  const copy = Object.fromEntries(Object.entries(value).map(([name, item]) => [name, probeOf(item, path ? `${path}.${name}` : name, visits)]));
  const note = (name: string | symbol) => {
    if (typeof name === "string") visit.read.add(name);
  };
  return new Proxy(copy, {
    get: (target, name, receiver) => (note(name), Reflect.get(target, name, receiver)),
    has: (target, name) => (note(name), Reflect.has(target, name)),
    getOwnPropertyDescriptor: (target, name) => (note(name), Reflect.getOwnPropertyDescriptor(target, name)),
  });
}

/** ajv's `/spec/containers/0/env` as the API server's `spec.containers[0].env`. */
function fieldPath(instancePath: string, missing: string | undefined): string {
  const parts = instancePath.split("/").slice(1);
  if (missing) parts.push(missing);
  let path = "";
  for (const part of parts) path += /^\d+$/.test(part) ? `[${part}]` : path ? `.${part}` : part;
  return path || "<root>";
}
