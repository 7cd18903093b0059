/**
 * Fly's published OpenAPI description of the Machines API, compiled with ajv
 * so the emulator can check every request it receives and every response it
 * sends. The spec is OpenAPI 3.0: `nullable` becomes a JSON Schema type list
 * and `$ref`s point into the spec's components.
 *
 * In strict mode, objects that declare their properties accept no others and
 * undeclared query parameters are refused: Fly would ignore a misspelt field
 * silently, the emulator makes it an error a test sees.
 *
 * ajv and ajv-formats are optional peer dependencies, imported here on demand.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../package-paths.js";

/** The env var that points the emulator at the spec. */
export const SPEC_ENV_VAR = "FLY_OPENAPI_SPEC";

/**
 * flame-ts' own copy of the spec (see spec/fly/README.md for its source). It
 * ships in the npm package, so the emulator finds it from a clone and from an
 * installed package alike.
 */
export function packagedSpecPath(): string {
  return join(packageRoot(), "spec", "fly", "machines-openapi.json");
}

/**
 * Where the emulator was started from: its messages name the switches of that
 * interface ("validate: false" in code, "--no-validate" on the command line).
 */
export type EmulatorInterface = "api" | "cli";

/** The words each interface uses for the emulator's spec and validation switches. */
const SWITCHES: Record<EmulatorInterface, { specPath: string; noValidate: string }> = {
  api: { specPath: "pass specPath", noValidate: "pass validate: false" },
  cli: { specPath: "pass --spec <file>", noValidate: "pass --no-validate" },
};

const SPEC_ID = "fly-machines-openapi";

type Json = Record<string, unknown>;
type Validate = ((data: unknown) => boolean) & { errors?: { instancePath: string; message?: string; params?: Record<string, unknown> }[] | null };

interface Parameter {
  name: string;
  in: "path" | "query" | "header" | "cookie";
  required: boolean;
  schema: Json;
  validate: Validate;
}

/** One operation of the spec, e.g. Machines_create = POST /apps/{app_name}/machines. */
export interface Operation {
  operationId: string;
  method: string;
  pathTemplate: string;
  pattern: RegExp;
  pathParameterNames: string[];
  parameters: Parameter[];
  requestBody: { required: boolean; validate: Validate | undefined } | undefined;
  /** Response validators by status ("200", "default"); undefined when the spec gives no body schema. */
  responses: Map<string, Validate | undefined>;
}

/** Finds the spec: an explicit path, then FLY_OPENAPI_SPEC, then the copy shipped in the package. */
export function resolveSpecPath(explicit?: string, from: EmulatorInterface = "api"): string {
  const candidate = explicit ?? process.env[SPEC_ENV_VAR] ?? packagedSpecPath();
  if (!existsSync(candidate)) {
    const switches = SWITCHES[from];
    throw new Error(
      `Fly's Machines API OpenAPI spec was not found at ${candidate}: ${switches.specPath} or set ${SPEC_ENV_VAR} to Fly's machines OpenAPI JSON (https://docs.machines.dev/spec/openapi3.json), or ${switches.noValidate}`,
    );
  }
  return candidate;
}

/** The spec's operations, compiled: matches requests to operations and checks them and their responses. */
export class OpenApiContract {
  private constructor(
    private readonly operations: Operation[],
    private readonly errorResponse: Validate | undefined,
  ) {}

  /**
   * Compiled contracts by spec content and mode. Compiling the whole spec takes
   * a quarter of a second of CPU, and a test suite starts an emulator per test;
   * a contract holds nothing of one emulator (its validators are pure), so
   * emulators of one process share it.
   */
  private static readonly compiled = new Map<string, Promise<OpenApiContract>>();

  /** Reads and compiles the spec at `specPath`; `from` words the error when ajv is missing (default "api"). */
  static load(specPath: string, options: { strict: boolean; from?: EmulatorInterface }): Promise<OpenApiContract> {
    const text = readFileSync(specPath, "utf8");
    const key = `${options.strict}\0${createHash("sha256").update(text).digest("hex")}`;
    const known = OpenApiContract.compiled.get(key);
    if (known) return known;
    const compiling = OpenApiContract.compile(text, options);
    OpenApiContract.compiled.set(key, compiling);
    // A failed compile (ajv missing, a bad spec) is not kept: the next emulator tries again and reports it itself.
    compiling.catch(() => OpenApiContract.compiled.delete(key));
    return compiling;
  }

  private static async compile(text: string, options: { strict: boolean; from?: EmulatorInterface }): Promise<OpenApiContract> {
    const spec = JSON.parse(text) as Json;
    const ajv = await createAjv(options.from ?? "api");
    const transform = (schema: unknown) => toJsonSchema(schema, options.strict);
    const components = (spec.components as Json | undefined)?.schemas as Json | undefined;
    const schemas: Json = {};
    for (const [name, schema] of Object.entries(components ?? {})) schemas[name] = transform(schema);
    ajv.addSchema({ $id: SPEC_ID, components: { schemas } });
    const compile = (schema: unknown): Validate => ajv.compile(transform(schema) as Json) as Validate;

    const operations: Operation[] = [];
    for (const [pathTemplate, pathItem] of Object.entries((spec.paths as Json | undefined) ?? {})) {
      const item = pathItem as Json;
      const shared = (item.parameters as Json[] | undefined) ?? [];
      for (const method of ["get", "put", "post", "delete", "patch"]) {
        const operation = item[method] as Json | undefined;
        if (!operation) continue;
        const pathParameterNames: string[] = [];
        const pattern = new RegExp(
          `^${pathTemplate.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{([^}]+)\}/g, (_, name: string) => {
            pathParameterNames.push(name);
            return "([^/]+)";
          })}$`,
        );
        const parameters = [...shared, ...((operation.parameters as Json[] | undefined) ?? [])].map((parameter) => ({
          name: parameter.name as string,
          in: parameter.in as Parameter["in"],
          required: parameter.required === true,
          schema: (parameter.schema as Json | undefined) ?? {},
          validate: compile(parameter.schema ?? {}),
        }));
        const body = operation.requestBody as Json | undefined;
        const bodySchema = jsonSchemaOf(body?.content);
        const responses = new Map<string, Validate | undefined>();
        for (const [status, response] of Object.entries((operation.responses as Json | undefined) ?? {})) {
          const schema = jsonSchemaOf((response as Json).content);
          responses.set(status, schema === undefined ? undefined : compile(schema));
        }
        operations.push({
          operationId: (operation.operationId as string | undefined) ?? `${method.toUpperCase()} ${pathTemplate}`,
          method: method.toUpperCase(),
          pathTemplate,
          pattern,
          pathParameterNames,
          parameters,
          requestBody: body ? { required: body.required === true, validate: bodySchema === undefined ? undefined : compile(bodySchema) } : undefined,
          responses,
        });
      }
    }
    // Fly's error body, which error statuses the spec leaves undeclared must match.
    const errorResponse = schemas.ErrorResponse ? compile({ $ref: "#/components/schemas/ErrorResponse" }) : undefined;
    return new OpenApiContract(operations, errorResponse);
  }

  /** The operation serving `method` on `path` (the path after the server's /v1), with its path parameters. */
  match(method: string, path: string): { operation: Operation; pathParameters: Record<string, string> } | undefined {
    for (const operation of this.operations) {
      if (operation.method !== method) continue;
      const found = operation.pattern.exec(path);
      if (!found) continue;
      const pathParameters: Record<string, string> = {};
      operation.pathParameterNames.forEach((name, index) => (pathParameters[name] = decodeURIComponent(found[index + 1]!)));
      return { operation, pathParameters };
    }
    return undefined;
  }

  /** Whether any operation serves `path`, whatever the method. */
  knowsPath(path: string): boolean {
    return this.operations.some((operation) => operation.pattern.test(path));
  }

  /**
   * What is wrong with a request, as readable problems (none: it conforms).
   * `extraQuery` admits query parameters Fly documents outside the spec.
   */
  checkRequest(
    operation: Operation,
    request: { query: URLSearchParams; body: { present: boolean; value: unknown } },
    extraQuery: (name: string) => boolean = () => false,
  ): string[] {
    const problems: string[] = [];
    const declared = new Set(operation.parameters.filter((parameter) => parameter.in === "query").map((parameter) => parameter.name));
    for (const parameter of operation.parameters) {
      if (parameter.in !== "query") continue;
      const values = request.query.getAll(parameter.name);
      if (values.length === 0) {
        if (parameter.required) problems.push(`query parameter "${parameter.name}" is required`);
        continue;
      }
      for (const raw of values) {
        const pieces = parameter.schema.enum && parameter.schema.type === "string" ? raw.split(",") : [raw];
        for (const piece of pieces) {
          if (!parameter.validate(coerce(piece, parameter.schema))) {
            problems.push(`query parameter "${parameter.name}"=${JSON.stringify(piece)} ${describeErrors(parameter.validate)}`);
          }
        }
      }
    }
    for (const name of new Set(request.query.keys())) {
      if (!declared.has(name) && !extraQuery(name)) problems.push(`query parameter "${name}" is not in the spec of ${operation.operationId}`);
    }
    const spec = operation.requestBody;
    if (!spec) {
      if (request.body.present) problems.push(`${operation.operationId} takes no request body`);
    } else if (!request.body.present) {
      if (spec.required) problems.push(`${operation.operationId} requires a JSON request body`);
    } else if (spec.validate && !spec.validate(request.body.value)) {
      problems.push(`request body ${describeErrors(spec.validate)}`);
    }
    return problems;
  }

  /** What is wrong with a response the emulator is about to send. Undeclared error statuses must be Fly's ErrorResponse. */
  checkResponse(operation: Operation, status: number, body: unknown): string[] {
    const key = String(status);
    let validate: Validate | undefined;
    if (operation.responses.has(key)) validate = operation.responses.get(key);
    else if (operation.responses.has("default")) validate = operation.responses.get("default");
    else if (status >= 400) validate = this.errorResponse;
    else return [`${operation.operationId} declares no ${status} response`];
    if (!validate || validate(body)) return [];
    return [`${status} response body ${describeErrors(validate)}`];
  }
}

/** ajv with formats, imported on demand; without them, says how to get them or do without in the words of `from`. */
async function createAjv(from: EmulatorInterface): Promise<{ addSchema(schema: Json): unknown; compile(schema: Json): unknown }> {
  let ajvModule: { default: unknown };
  let formatsModule: { default: unknown };
  try {
    [ajvModule, formatsModule] = await Promise.all([import("ajv"), import("ajv-formats")]);
  } catch (error) {
    throw new Error(
      `the Fly emulator checks requests against Fly's OpenAPI spec with ajv and ajv-formats, optional peer dependencies of flame-ts that are not installed: install ajv and ajv-formats (npm install -D ajv ajv-formats) or ${SWITCHES[from].noValidate}`,
      { cause: error },
    );
  }
  // Both are CommonJS: the class or function is module.exports, or its `default`.
  const Ajv = unwrapDefault(ajvModule) as new (options: Json) => { addSchema(schema: Json): unknown; compile(schema: Json): unknown };
  const addFormats = unwrapDefault(formatsModule) as (ajv: unknown) => void;
  // strict: false lets OpenAPI's annotations (example, x-enum-varnames) pass as unknown keywords.
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  return ajv;
}

function unwrapDefault(module: { default: unknown }): unknown {
  const value = module.default as { default?: unknown };
  return typeof value === "function" ? value : value.default;
}

/** The application/json schema of a request body or response, if the spec gives one. */
function jsonSchemaOf(content: unknown): unknown {
  const json = (content as Json | undefined)?.["application/json"] as Json | undefined;
  return json?.schema;
}

/**
 * OpenAPI 3.0 schema -> JSON Schema: `nullable` becomes a "null" type,
 * `$ref`s point into the compiled components, and (strict) objects that list
 * their properties take no others.
 */
function toJsonSchema(schema: unknown, strict: boolean): unknown {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) return schema;
  const source = schema as Json;
  const out: Json = {};
  for (const [key, value] of Object.entries(source)) {
    if (key === "$ref" && typeof value === "string") {
      out.$ref = value.startsWith("#/") ? `${SPEC_ID}${value}` : value;
    } else if (key === "properties" && typeof value === "object" && value !== null) {
      out.properties = Object.fromEntries(Object.entries(value as Json).map(([name, property]) => [name, toJsonSchema(property, strict)]));
    } else if ((key === "items" || key === "additionalProperties" || key === "not") && typeof value === "object") {
      out[key] = toJsonSchema(value, strict);
    } else if ((key === "allOf" || key === "anyOf" || key === "oneOf") && Array.isArray(value)) {
      out[key] = value.map((item) => toJsonSchema(item, strict));
    } else if (key !== "nullable" && key !== "example" && key !== "discriminator" && !key.startsWith("x-")) {
      out[key] = value;
    }
  }
  if (source.nullable === true) {
    if (typeof out.type === "string") out.type = [out.type, "null"];
    if (Array.isArray(out.enum)) out.enum = [...out.enum, null];
    if (out.type === undefined) return { anyOf: [out, { type: "null" }] };
  }
  if (strict && out.properties && out.additionalProperties === undefined && !out.allOf && !out.anyOf && !out.oneOf) {
    out.additionalProperties = false;
  }
  return out;
}

/** A query string value as the type its schema declares, so ajv can check it. */
function coerce(raw: string, schema: Json): unknown {
  if (schema.type === "boolean") return raw === "true" ? true : raw === "false" ? false : raw;
  if ((schema.type === "integer" || schema.type === "number") && /^-?\d+(\.\d+)?$/.test(raw)) return Number(raw);
  return raw;
}

function describeErrors(validate: Validate): string {
  return (validate.errors ?? [])
    .map((error) => {
      const where = error.instancePath ? `${error.instancePath} ` : "";
      const extra = error.params?.additionalProperty ? ` "${String(error.params.additionalProperty)}"` : "";
      const allowed = error.params?.allowedValues ? ` ${JSON.stringify(error.params.allowedValues)}` : "";
      return `${where}${error.message ?? "is invalid"}${extra}${allowed}`;
    })
    .join("; ");
}
