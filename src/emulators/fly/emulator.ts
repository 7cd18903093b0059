/**
 * A Fly Machines API emulator for tests and local development: a node:http
 * server on 127.0.0.1 that speaks the endpoints FlyBackend uses (create,
 * list with metadata filters, get, wait, stop, start, destroy, get app) and
 * boots each machine as a real local process running its `init.cmd`.
 *
 * Every request and response is checked against Fly's published OpenAPI
 * spec; a request the spec rejects gets a 400 saying why and is kept in
 * `violations()` so a test can assert there were none. Fly's published rate
 * limits are enforced, and faults (throttling, capacity errors, lost
 * responses, slow, stuck or crashing boots) can be injected.
 */
import { randomBytes, timingSafeEqual, createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import * as v from "valibot";
import { milliseconds, parseOptions } from "../../validation.js";
import { EmulatedApp, HttpError, type Reply } from "./app.js";
import type { BootFault, EmulatedMachine, MachineEvent, MachineState } from "./machine.js";
import { OpenApiContract, resolveSpecPath, type EmulatorInterface, type Operation } from "./openapi.js";
import { FlyRateLimits, retryAfterSeconds } from "./rate-limit.js";

export type { BootFault } from "./machine.js";

/** Options of startFlyEmulator. */
export interface FlyEmulatorOptions {
  /** The one app the emulator serves. Default "flame-emulated". */
  app?: string;
  /** Token the emulator accepts as `Authorization: Bearer <token>`. Default: a random one (see `token` on the result). */
  token?: string;
  /** Region of machines created without one. Default "iad". */
  region?: string;
  /** Port on 127.0.0.1. Default 0 (any free port). */
  port?: number;
  /** Fly's OpenAPI spec. Default: env FLY_OPENAPI_SPEC, else the copy flame-ts ships, spec/fly/machines-openapi.json in its package. */
  specPath?: string;
  /** Check requests and responses against the spec (needs ajv and ajv-formats). Default true. */
  validate?: boolean;
  /**
   * The interface the emulator was started from, so an error about a missing
   * spec or ajv names that interface's switches: "api" says `validate: false`,
   * "cli" (what `flame-ts fly-emulator` sets) says `--no-validate`. Default "api".
   */
  invokedFrom?: EmulatorInterface;
  /** Refuse body fields and query parameters the spec does not declare (Fly ignores them silently). Default true. */
  strict?: boolean;
  /** Enforce Fly's published rate limits with 429: 1 request per second per action, bursts of 3; get machine 5 per second, bursts of 10. Default true. */
  rateLimits?: boolean;
  /** What a machine's environment starts from, as an image's would. Default: PATH, HOME, LANG and TMPDIR of this process. */
  baseEnv?: Record<string, string>;
  /**
   * The app's secrets. Fly injects them all into a machine unless it is created
   * with `skip_secrets` (none) or its process sets `ignore_app_secrets` (only
   * the process's `secrets`). Default none.
   */
  secrets?: Record<string, string>;
  /** Working directory of machine processes. Default: this process's. */
  cwd?: string;
  /** Ms between a stop's signal and SIGKILL when neither the request nor stop_config says. Default 5 000 (Fly's). */
  stopTimeout?: number;
  /** Copy machines' output to this process's stderr, prefixed with the machine id. Default false. */
  echoOutput?: boolean;
}

/** Operations the emulator serves, by a short name for `failNext`. */
export const OPERATIONS = {
  app: "Apps_show",
  list: "Machines_list",
  create: "Machines_create",
  get: "Machines_show",
  destroy: "Machines_delete",
  wait: "Machines_wait",
  stop: "Machines_stop",
  start: "Machines_start",
} as const;

/** Short name of an operation: "create", "list", "get", "destroy", "wait", "stop", "start", "app". */
export type FlyOperation = keyof typeof OPERATIONS;

/** An answer forced on the next requests of an operation. */
export type ResponseFault =
  | {
      /** HTTP status to answer with, e.g. 429, 412, 409, 500. */
      status: number;
      /** Fly's error text. Default: a plausible one for the status. */
      error?: string;
      /** Fly's `status` field, e.g. "insufficient_capacity". */
      flyStatus?: "unknown" | "insufficient_capacity";
      /** Retry-After header, in seconds. Default: none. */
      retryAfterSeconds?: number;
      /** How many requests get it. Default 1. */
      times?: number;
    }
  | {
      /** Close the connection without answering; with `afterHandling`, after doing the work (a create makes its machine). */
      dropConnection: true;
      afterHandling?: boolean;
      times?: number;
    }
  | {
      /** Do the work at once but answer `delayAnswer` ms later, as a slow API does (a created machine boots meanwhile). */
      delayAnswer: number;
      times?: number;
    };

/** One request the emulator received, and what it answered. */
export interface RecordedRequest {
  at: number;
  method: string;
  path: string;
  query: Record<string, string[]>;
  operationId: string | undefined;
  status: number;
  /** Parsed JSON body, if any. */
  body: unknown;
  /** Set when a fault or the rate limit answered instead of the handler. */
  fault?: string;
}

/** A request or response that broke Fly's OpenAPI spec. */
export interface SpecViolation {
  at: number;
  direction: "request" | "response";
  method: string;
  path: string;
  operationId: string;
  problems: string[];
}

/** A machine as the emulator sees it, for assertions. */
export interface EmulatedMachineInfo {
  id: string;
  name: string;
  state: MachineState;
  region: string;
  config: Record<string, any>;
  /** Environment its process got (Fly's variables, secrets, config.env). */
  env: Record<string, string>;
  pid: number | undefined;
  exitCode: number | undefined;
  restarts: number;
  /** The tail of its stdout and stderr. */
  output: string;
  events: MachineEvent[];
}

/** A running emulator. */
export interface FlyEmulator {
  /** Base URL for FlyBackend's `baseUrl`: http://127.0.0.1:<port> (the API is under /v1). */
  readonly url: string;
  readonly token: string;
  readonly app: string;
  /** Every machine ever created, destroyed ones included, oldest first. */
  machines(): EmulatedMachineInfo[];
  /** Every request served, oldest first. */
  requests(): RecordedRequest[];
  /** Requests the spec rejected and responses that broke it. A conforming client sees none. */
  violations(): SpecViolation[];
  /** Forces `fault` on the next requests of `operation` (after auth and spec checks). */
  failNext(operation: FlyOperation, fault: ResponseFault): void;
  /** Boots the next machines with these faults, one per machine, in order. */
  nextBoots(...faults: BootFault[]): void;
  /** Stops the server and kills every machine process it started. */
  close(): Promise<void>;
}

const optionsSchema = v.strictObject({
  app: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "Expected a Fly app name")), "flame-emulated"),
  token: v.optional(v.pipe(v.string(), v.minLength(1))),
  region: v.optional(v.pipe(v.string(), v.minLength(1)), "iad"),
  port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65_535)), 0),
  specPath: v.optional(v.string()),
  validate: v.optional(v.boolean(), true),
  invokedFrom: v.optional(v.picklist(["api", "cli"]), "api"),
  strict: v.optional(v.boolean(), true),
  rateLimits: v.optional(v.boolean(), true),
  baseEnv: v.optional(v.record(v.string(), v.string())),
  secrets: v.optional(v.record(v.string(), v.string()), {}),
  cwd: v.optional(v.string()),
  stopTimeout: v.optional(milliseconds(), 5_000),
  echoOutput: v.optional(v.boolean(), false),
});

/** Starts an emulator; resolves once it listens. */
export async function startFlyEmulator(input: FlyEmulatorOptions = {}): Promise<FlyEmulator> {
  const options = parseOptions("Fly emulator", optionsSchema, input);
  const contract = options.validate
    ? await OpenApiContract.load(resolveSpecPath(options.specPath, options.invokedFrom), { strict: options.strict, from: options.invokedFrom })
    : undefined;
  const state = new EmulatorServer(options, contract);
  const server = createServer((request, response) => void state.handle(request, response));
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: options.port }, () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    token: state.token,
    app: options.app,
    machines: () => [...state.app.machines.values()].map(snapshot),
    requests: () => [...state.log],
    violations: () => [...state.violations],
    failNext: (operation, fault) => state.failNext(operation, fault),
    nextBoots: (...faults) => state.app.bootFaults.push(...faults),
    close: async () => {
      server.closeAllConnections();
      await Promise.all([new Promise<void>((resolve) => server.close(() => resolve())), state.app.close()]);
    },
  };
}

type ResolvedOptions = v.InferOutput<typeof optionsSchema>;

/** The HTTP side: routing, auth, spec checks, rate limits, faults, and the request log. */
class EmulatorServer {
  readonly token: string;
  readonly app: EmulatedApp;
  readonly log: RecordedRequest[] = [];
  readonly violations: SpecViolation[] = [];
  private readonly tokenDigest: Buffer;
  private readonly faults = new Map<string, ResponseFault[]>();
  /** The emulator's own limiter (rate-limit.ts), independent of the backend's pacing so it can catch it out. */
  private readonly rateLimits = new FlyRateLimits();

  constructor(
    private readonly options: ResolvedOptions,
    private readonly contract: OpenApiContract | undefined,
  ) {
    this.token = options.token ?? randomBytes(24).toString("base64url");
    this.tokenDigest = digest(this.token);
    const env = process.env;
    const baseEnv = options.baseEnv ?? Object.fromEntries(["PATH", "HOME", "LANG", "TMPDIR"].flatMap((key) => (env[key] ? [[key, env[key]!]] : [])));
    this.app = new EmulatedApp(options.region, {
      app: options.app,
      cwd: options.cwd ?? process.cwd(),
      baseEnv,
      secrets: options.secrets,
      stopTimeout: options.stopTimeout,
      echoOutput: options.echoOutput,
    });
  }

  failNext(operation: FlyOperation, fault: ResponseFault): void {
    const operationId = OPERATIONS[operation];
    const queue = this.faults.get(operationId) ?? [];
    for (let i = 0; i < (fault.times ?? 1); i += 1) queue.push(fault);
    this.faults.set(operationId, queue);
  }

  async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://emulator");
    const method = request.method ?? "GET";
    const raw = await readBody(request);
    const entry: RecordedRequest = {
      at: Date.now(),
      method,
      path: url.pathname,
      query: queryRecord(url.searchParams),
      operationId: undefined,
      status: 0,
      body: undefined,
    };
    this.log.push(entry);
    let operation: Operation | undefined;
    const send = (reply: Reply) => {
      entry.status = reply.status;
      if (operation && this.contract) {
        const problems = this.contract.checkResponse(operation, reply.status, reply.body);
        if (problems.length > 0) this.violations.push({ at: Date.now(), direction: "response", method, path: url.pathname, operationId: operation.operationId, problems });
      }
      const text = reply.body === undefined ? "" : JSON.stringify(reply.body);
      response.writeHead(reply.status, {
        "content-type": "application/json",
        "fly-request-id": `01emulated${randomBytes(8).toString("hex")}`,
        ...reply.headers,
      });
      response.end(text);
    };
    try {
      if (!url.pathname.startsWith("/v1/")) throw new HttpError(404, "not found");
      const path = url.pathname.slice(3);
      const matched = this.match(method, path);
      if (!matched) throw new HttpError(this.contract?.knowsPath(path) ? 405 : 404, `no ${method} ${url.pathname} in the Machines API`);
      operation = matched.operation;
      entry.operationId = operation.operationId;
      if (!this.authorized(request.headers.authorization)) throw new HttpError(401, "unauthorized");
      let body: unknown;
      if (raw.length > 0) {
        try {
          body = JSON.parse(raw);
          entry.body = body;
        } catch {
          this.violation(entry, operation, [`request body is not JSON`]);
          throw new HttpError(400, "request body is not valid JSON");
        }
      }
      if (this.contract) {
        const problems = this.contract.checkRequest(
          operation,
          { query: url.searchParams, body: { present: raw.length > 0, value: body } },
          (name) => operation!.operationId === "Machines_list" && name.startsWith("metadata."),
        );
        if (problems.length > 0) {
          this.violation(entry, operation, problems);
          throw new HttpError(400, `request does not match Fly's OpenAPI spec: ${problems.join("; ")}`);
        }
      }
      const { pathParameters } = matched;
      if (pathParameters.app_name !== this.options.app) throw new HttpError(404, `app "${pathParameters.app_name}" not found`);
      const limited = this.rateLimited(operation.operationId, pathParameters.machine_id ?? pathParameters.app_name);
      if (limited !== undefined) {
        entry.fault = "rate-limit";
        return send({ status: 429, body: { error: "rate limit exceeded" }, headers: { "retry-after": retryAfterSeconds(limited) } });
      }
      const fault = this.faults.get(operation.operationId)?.shift();
      if (fault && "status" in fault) {
        entry.fault = `status ${fault.status}`;
        return send({
          status: fault.status,
          body: { error: fault.error ?? defaultFaultText(fault.status, fault.flyStatus), ...(fault.flyStatus ? { status: fault.flyStatus } : {}) },
          headers: fault.retryAfterSeconds !== undefined ? { "retry-after": String(fault.retryAfterSeconds) } : {},
        });
      }
      if (fault && "dropConnection" in fault && !fault.afterHandling) {
        entry.fault = "dropped";
        request.socket.destroy();
        return;
      }
      const reply = await this.app.serve(operation.operationId, pathParameters, url.searchParams, body, response);
      if (fault && "dropConnection" in fault) {
        entry.fault = "dropped after handling";
        entry.status = reply.status;
        request.socket.destroy();
        return;
      }
      if (fault && "delayAnswer" in fault) {
        entry.fault = `answered after ${fault.delayAnswer} ms`;
        await new Promise((resolve) => setTimeout(resolve, fault.delayAnswer));
      }
      send(reply);
    } catch (error) {
      if (response.headersSent) return;
      if (request.socket.destroyed) {
        entry.status = 499; // the client hung up first
        return;
      }
      if (error instanceof HttpError) return send({ status: error.status, body: { error: error.message } });
      send({ status: 500, body: { error: `emulator error: ${(error as Error).message}` } });
    }
  }

  private match(method: string, path: string) {
    if (this.contract) return this.contract.match(method, path);
    // Without the spec, route the operations the emulator serves by hand.
    const found = /^\/apps\/([^/]+)(?:\/machines(?:\/([^/]+)(?:\/(wait|stop|start))?)?)?$/.exec(path);
    if (!found) return undefined;
    const [, app, machineId, action] = found;
    const operationId =
      action === "wait" ? "Machines_wait" : action === "stop" ? "Machines_stop" : action === "start" ? "Machines_start"
        : machineId ? ({ GET: "Machines_show", DELETE: "Machines_delete" } as Record<string, string>)[method]
          : path.endsWith("/machines") ? ({ GET: "Machines_list", POST: "Machines_create" } as Record<string, string>)[method]
            : method === "GET" ? "Apps_show" : undefined;
    if (!operationId) return undefined;
    const operation = { operationId } as Operation;
    return { operation, pathParameters: { app_name: decodeURIComponent(app!), ...(machineId ? { machine_id: decodeURIComponent(machineId) } : {}) } };
  }

  private authorized(header: string | undefined): boolean {
    if (!header) return false;
    const presented = header.startsWith("Bearer ") ? header.slice(7) : header;
    return timingSafeEqual(digest(presented), this.tokenDigest);
  }

  /** Undefined when the request may pass (it then counts against the limit), else ms until it could. */
  private rateLimited(operationId: string, scope: string): number | undefined {
    if (!this.options.rateLimits) return undefined;
    const wait = this.rateLimits.admit(operationId, scope);
    return wait === 0 ? undefined : wait;
  }

  private violation(entry: RecordedRequest, operation: Operation, problems: string[]): void {
    this.violations.push({ at: Date.now(), direction: "request", method: entry.method, path: entry.path, operationId: operation.operationId, problems });
  }
}

function snapshot(machine: EmulatedMachine): EmulatedMachineInfo {
  return {
    id: machine.id,
    name: machine.name,
    state: machine.state,
    region: machine.region,
    config: structuredClone(machine.config),
    env: { ...machine.env },
    pid: machine.pid,
    exitCode: machine.exitCode,
    restarts: machine.restarts,
    output: machine.output,
    events: machine.events.map((event) => ({ ...event })),
  };
}

function defaultFaultText(status: number, flyStatus: string | undefined): string {
  if (flyStatus === "insufficient_capacity") return "insufficient resources available to fulfill request: could not reserve resource for machine";
  const texts: Record<number, string> = {
    409: "conflict: machine is being modified by another request",
    412: "failed_precondition: unable to satisfy request",
    422: "unprocessable entity: could not reserve resources",
    429: "rate limit exceeded",
    500: "internal server error",
    503: "service unavailable",
  };
  return texts[status] ?? `emulated failure (HTTP ${status})`;
}

function queryRecord(params: URLSearchParams): Record<string, string[]> {
  const record: Record<string, string[]> = {};
  for (const [key, value] of params) (record[key] ??= []).push(value);
  return record;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    request.setEncoding("utf8");
    request.on("data", (chunk: string) => (text += chunk));
    request.on("end", () => resolve(text));
    request.on("error", reject);
  });
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}
