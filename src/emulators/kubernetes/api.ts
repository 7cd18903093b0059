/**
 * The HTTP side of the emulator: it authenticates, maps each request to the
 * authorizer's attributes (verb, group, resource, ...), records it, applies
 * RBAC and injected faults, validates what is written, and hands the rest to
 * the cluster. Every answer that is not a success is a Status object, and
 * nothing a client sends can crash it: a malformed body is a 400.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { EmulatedCluster } from "./cluster.js";
import { discoveryDocument, isPublicPath } from "./discovery.js";
import { applyPatch } from "./patch.js";
import { allows, forbidden, type PolicyRule, type RequestAttributes, type Verb } from "./rbac.js";
import { deleteOptions, faultError, knownOperations, methodNotAllowed, parseTarget, type ApiFault, type Target } from "./requests.js";
import { toTable, unknownResource, type ResourceType } from "./resources.js";
import type { SchemaValidator } from "./schema.js";
import { parseFieldSelector, parseLabelSelector, type KubernetesObject } from "./selectors.js";
import { ApiError, badRequest, invalid, notFound, statusObject } from "./status.js";
import type { WatchStreams } from "./watch.js";

/** The largest request body the API server takes (3 MiB). */
const BODY_LIMIT = 3 * 1024 * 1024;

export type { ApiFault } from "./requests.js";

/** One resource request the emulator received, as the authorizer saw it, and its answer. */
export interface RecordedRequest extends RequestAttributes {
  method: string;
  path: string;
  /** The name `failNext` knows the operation by, e.g. "createPod", "watchPods", "getPodLog". */
  operation: string;
  status: number;
  /** Set when an injected fault answered instead of the cluster. */
  fault?: string;
}

/** Answers that mean the client sent what no API server takes: malformed, invalid, too large, of an unknown type, or a verb the resource lacks. */
const CLIENT_MISTAKES = new Set([400, 405, 413, 415, 422]);

/** A request the emulator refused as the API server would (400, 405, 413, 415, 422): a client bug. */
export interface Violation {
  at: number;
  method: string;
  path: string;
  operation: string | undefined;
  status: number;
  message: string;
}

/** What the API layer is told of the emulator: its token, Role, user, validator and address. */
export interface ApiSettings {
  token: string;
  /** The Role's rules; undefined allows everything. */
  rules: PolicyRule[] | undefined;
  /** Who the token is, in Forbidden messages. */
  user: string;
  validator: SchemaValidator | undefined;
  /** host:port, for /api's serverAddressByClientCIDRs. */
  serverAddress: string;
}

/** The request handler: one per emulator, owning its request log, violations and queued faults. */
export class KubernetesApi {
  readonly requests: RecordedRequest[] = [];
  readonly violations: Violation[] = [];
  private readonly faults = new Map<string, ApiFault[]>();
  private readonly tokenDigest: Buffer;

  constructor(
    private readonly settings: ApiSettings,
    private readonly cluster: EmulatedCluster,
    private readonly watches: WatchStreams,
  ) {
    this.tokenDigest = digest(settings.token);
  }

  /** Drops every fault queued by failNext. */
  clearFaults(): void {
    this.faults.clear();
  }

  failNext(operation: string, fault: ApiFault): void {
    if (!knownOperations().has(operation)) {
      throw new Error(`failNext: unknown operation ${JSON.stringify(operation)}; the emulator serves ${[...knownOperations()].sort().join(", ")}`);
    }
    if (!Number.isInteger(fault.status) || fault.status < 400 || fault.status > 599) throw new Error(`failNext: status must be an HTTP error status (400-599), got ${fault.status}`);
    const queue = this.faults.get(operation) ?? [];
    for (let i = 0; i < (fault.times ?? 1); i += 1) queue.push(fault);
    this.faults.set(operation, queue);
  }

  async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    response.on("error", () => undefined);
    const method = request.method ?? "GET";
    let url: URL;
    let entry: RecordedRequest | undefined;
    try {
      url = new URL(request.url ?? "/", "http://emulator");
    } catch {
      return send(response, 400, statusObject(400, "BadRequest", "malformed request URL"));
    }
    try {
      const raw = await readBody(request);
      if (!isPublicPath(url.pathname) && !this.authenticated(request.headers.authorization)) throw new ApiError(401, "Unauthorized", "Unauthorized");
      const document = method === "GET" ? discoveryDocument(url.pathname, this.settings.serverAddress) : undefined;
      if (document) return send(response, 200, document);
      if (isPublicPath(url.pathname)) return send(response, 200, "ok");
      const target = parseTarget(method, url);
      entry = { ...target.attributes, method, path: url.pathname, operation: target.operation, status: 0 };
      this.requests.push(entry);
      // Everyone may ask what they may do (the system:basic-user role), so reviews pass RBAC.
      const isReview = target.attributes.resource === "selfsubjectaccessreviews";
      if (this.settings.rules && !isReview && !allows(this.settings.rules, target.attributes)) throw forbidden(this.settings.user, target.attributes);
      const fault = this.faults.get(target.operation)?.shift();
      if (fault) {
        entry.fault = `status ${fault.status}`;
        throw faultError(fault, target.attributes);
      }
      const contentType = String(request.headers["content-type"] ?? "");
      if (raw.length > 0 && method !== "PATCH" && contentType && !/json/i.test(contentType)) {
        throw new ApiError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json (the emulator does not read ${contentType.split(";")[0]})`);
      }
      const body = raw.length > 0 ? parseJson(raw) : undefined;
      const answer = await this.serve(target, url, body, request, response);
      if (answer) {
        entry.status = answer.status;
        send(response, answer.status, answer.body, answer.contentType);
      } else entry.status = 200;
    } catch (error) {
      const apiError = error instanceof ApiError ? error : new ApiError(500, "InternalError", `Internal error occurred: ${(error as Error).message}`);
      if (entry) entry.status = apiError.code;
      if (CLIENT_MISTAKES.has(apiError.code) && !entry?.fault) {
        this.violations.push({ at: Date.now(), method, path: url.pathname, operation: entry?.operation, status: apiError.code, message: apiError.message });
      }
      if (response.headersSent) {
        response.destroy();
        return;
      }
      send(response, apiError.code, apiError.toStatus(), "application/json", apiError.headers);
    }
  }

  private async serve(target: Target, url: URL, body: unknown, request: IncomingMessage, response: ServerResponse): Promise<Answer | undefined> {
    const { resource, attributes } = target;
    const query = url.searchParams;
    if (attributes.resource === "selfsubjectaccessreviews") return this.accessReview(body);
    if (!resource) throw unknownResource();
    const { namespace, name } = attributes;
    const wantsTable = /as=Table/.test(String(request.headers.accept ?? ""));
    if (attributes.subresource && !(attributes.verb === "get" && ["log", "status"].includes(attributes.subresource))) throw unknownResource();
    switch (attributes.verb) {
      case "get": {
        const object = this.cluster.store.get(resource.name, namespace, name!);
        if (!object) throw notFound("", resource.name, name!);
        if (attributes.subresource === "log") return this.log(object, query, response);
        return { status: 200, body: wantsTable ? toTable(resource, [object], object.metadata.resourceVersion, query.get("includeObject")) : object };
      }
      case "list": {
        const labels = parseLabelSelector(query.get("labelSelector"));
        const fields = parseFieldSelector(resource.name, query.get("fieldSelector"));
        const items = this.cluster.store.list(resource.name, namespace).filter((object) => labels(object) && fields(object));
        const resourceVersion = this.cluster.store.resourceVersion;
        if (wantsTable) return { status: 200, body: toTable(resource, items, resourceVersion, query.get("includeObject")) };
        return { status: 200, body: { kind: `${resource.kind}List`, apiVersion: "v1", metadata: { resourceVersion }, items: items.map(withoutTypeMeta) } };
      }
      case "watch": {
        const labels = parseLabelSelector(query.get("labelSelector"));
        const fields = parseFieldSelector(resource.name, query.get("fieldSelector"));
        const resourceVersion = query.get("resourceVersion") || undefined;
        if (resourceVersion !== undefined && !/^\d+$/.test(resourceVersion)) throw new ApiError(400, "BadRequest", `invalid resource version "${resourceVersion}"`);
        const timeoutSeconds = query.get("timeoutSeconds");
        this.watches.serve(
          {
            resource,
            namespace,
            // A watch of one object (the deprecated .../pods/NAME?watch=1) is a watch of its name.
            selector: (object) => labels(object) && fields(object) && (name === undefined || object.metadata.name === name),
            resourceVersion,
            allowBookmarks: query.get("allowWatchBookmarks") === "true",
            sendInitialEvents: query.get("sendInitialEvents") === "true",
            timeout: timeoutSeconds && /^\d+$/.test(timeoutSeconds) ? Number(timeoutSeconds) * 1000 : undefined,
          },
          response,
        );
        return undefined;
      }
      case "create": {
        if (!resource.verbs.includes("create")) throw methodNotAllowed();
        const object = this.checkedObject(resource, body, namespace);
        return { status: 201, body: this.cluster.create(resource, object) };
      }
      case "update": {
        if (!resource.verbs.includes("update")) throw methodNotAllowed();
        const object = this.checkedObject(resource, body, namespace);
        return { status: 200, body: this.cluster.replace(resource, namespace, name!, object) };
      }
      case "patch": {
        if (!resource.verbs.includes("patch")) throw methodNotAllowed();
        const current = this.cluster.store.get(resource.name, namespace, name!);
        if (!current) throw notFound("", resource.name, name!);
        const patched = applyPatch(current, body, request.headers["content-type"]) as KubernetesObject;
        // A patch that does not name a resourceVersion applies to whatever is current.
        if ((body as { metadata?: { resourceVersion?: unknown } }).metadata?.resourceVersion === undefined) patched.metadata.resourceVersion = current.metadata.resourceVersion;
        const object = this.checkedObject(resource, patched, namespace);
        return { status: 200, body: this.cluster.replace(resource, namespace, name!, object) };
      }
      case "delete": {
        if (!resource.verbs.includes("delete")) throw methodNotAllowed();
        return { status: 200, body: await this.cluster.delete(resource, namespace, name!, deleteOptions(body, query)) };
      }
      case "deletecollection": {
        if (!resource.verbs.includes("deletecollection")) throw methodNotAllowed();
        const labels = parseLabelSelector(query.get("labelSelector"));
        const fields = parseFieldSelector(resource.name, query.get("fieldSelector"));
        const options = deleteOptions(body, query);
        const chosen = this.cluster.store.list(resource.name, namespace).filter((object) => labels(object) && fields(object));
        const deleted = await Promise.all(chosen.map((object) => this.cluster.delete(resource, object.metadata.namespace, object.metadata.name, options)));
        return { status: 200, body: { kind: `${resource.kind}List`, apiVersion: "v1", metadata: { resourceVersion: this.cluster.store.resourceVersion }, items: deleted } };
      }
    }
  }

  /** The object of a create or update, checked as the API server decodes and validates it. */
  private checkedObject(resource: ResourceType, body: unknown, namespace: string | undefined): KubernetesObject {
    if (!body || typeof body !== "object" || Array.isArray(body)) throw badRequest(`the body of the request must be a ${resource.kind} object`);
    const object = body as KubernetesObject;
    if (object.kind === undefined) throw badRequest(`Object 'Kind' is missing in '${truncate(JSON.stringify(body))}'`);
    if (object.apiVersion !== "v1") throw badRequest(`the API version in the data (${String(object.apiVersion)}) does not match the expected API version (v1)`);
    if (object.kind !== resource.kind) throw badRequest(`the kind in the data (${String(object.kind)}) does not match the expected kind (${resource.kind})`);
    if (object.metadata === undefined) object.metadata = {} as KubernetesObject["metadata"];
    if (!object.metadata || typeof object.metadata !== "object" || Array.isArray(object.metadata)) throw badRequest("metadata must be an object");
    if (resource.namespaced) {
      if (object.metadata.namespace && object.metadata.namespace !== namespace) throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
      object.metadata.namespace = namespace!;
    }
    this.checkSchema(resource, object);
    return object;
  }

  private checkSchema(resource: ResourceType, object: unknown): void {
    if (!this.settings.validator || !resource.schema) return;
    const problems = this.settings.validator.check(resource.schema, object);
    if (problems.unknownFields.length > 0) throw badRequest(`strict decoding error: ${problems.unknownFields.map((field) => `unknown field "${field}"`).join(", ")}`);
    if (problems.invalidFields.length > 0) {
      const name = String((object as KubernetesObject).metadata?.name ?? "");
      throw invalid(resource.kind, name, problems.invalidFields);
    }
  }

  private accessReview(body: unknown): Answer {
    if (!body || typeof body !== "object" || Array.isArray(body)) throw badRequest("the body of the request must be a SelfSubjectAccessReview object");
    const review = body as { kind?: string; apiVersion?: string; spec?: { resourceAttributes?: Record<string, string>; nonResourceAttributes?: unknown } };
    if (review.kind !== "SelfSubjectAccessReview" || review.apiVersion !== "authorization.k8s.io/v1") {
      throw badRequest(`the body must be an authorization.k8s.io/v1 SelfSubjectAccessReview, got ${String(review.apiVersion)} ${String(review.kind)}`);
    }
    if (this.settings.validator) {
      const problems = this.settings.validator.check("SelfSubjectAccessReview", body);
      if (problems.unknownFields.length > 0) throw badRequest(`strict decoding error: ${problems.unknownFields.map((field) => `unknown field "${field}"`).join(", ")}`);
      if (problems.invalidFields.length > 0) throw invalid("SelfSubjectAccessReview", "", problems.invalidFields);
    }
    const attributes = review.spec?.resourceAttributes;
    if (!attributes && !review.spec?.nonResourceAttributes) throw invalid("SelfSubjectAccessReview", "", [{ field: "spec.resourceAttributes", message: "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified" }]);
    let allowed = true;
    if (attributes && this.settings.rules) {
      allowed = allows(this.settings.rules, {
        verb: (attributes.verb ?? "") as Verb,
        group: attributes.group ?? "",
        resource: attributes.resource ?? "",
        ...(attributes.subresource ? { subresource: attributes.subresource } : {}),
        ...(attributes.namespace ? { namespace: attributes.namespace } : {}),
        ...(attributes.name ? { name: attributes.name } : {}),
      });
    }
    return {
      status: 201,
      body: {
        kind: "SelfSubjectAccessReview",
        apiVersion: "authorization.k8s.io/v1",
        metadata: { creationTimestamp: null },
        spec: review.spec,
        status: allowed ? { allowed: true, reason: this.settings.rules ? "RBAC: allowed by RoleBinding \"flame-emulated\"" : "" } : { allowed: false },
      },
    };
  }

  /** The container's captured output, as the kubelet serves it: all, the last `tailLines`, or followed until it exits. */
  private log(pod: KubernetesObject, query: URLSearchParams, response: ServerResponse): Answer | undefined {
    const container = ((pod.spec as Record<string, any>).containers as Record<string, any>[])[0]!;
    const asked = query.get("container");
    if (asked && asked !== container.name) throw badRequest(`container ${asked} is not valid for pod ${pod.metadata.name}`);
    const runtime = this.cluster.runtimeOf(pod.metadata.uid);
    const waiting = ((pod.status as Record<string, any>)?.containerStatuses?.[0]?.state?.waiting ?? (runtime && !runtime.running && runtime.exitCode === undefined ? { reason: "ContainerCreating" } : undefined)) as { reason?: string } | undefined;
    if (runtime && waiting && runtime.output === "") {
      throw badRequest(`container "${container.name}" in pod "${pod.metadata.name}" is waiting to start: ${waiting.reason ?? "ContainerCreating"}`);
    }
    const tail = query.get("tailLines");
    if (tail !== null && !/^\d+$/.test(tail)) throw badRequest(`invalid tailLines "${tail}"`);
    let text = runtime?.log() ?? "";
    if (tail !== null) text = lastLines(text, Number(tail));
    if (query.get("follow") !== "true" || !runtime || runtime.finished) return { status: 200, body: text, contentType: "text/plain" };
    response.writeHead(200, { "content-type": "text/plain", "transfer-encoding": "chunked" });
    response.write(text);
    const stop = runtime.followOutput((chunk) => {
      if (chunk === undefined) response.end();
      else response.write(chunk);
    });
    response.once("close", stop);
    return undefined;
  }

  private authenticated(header: string | undefined): boolean {
    if (!header?.startsWith("Bearer ")) return false;
    return timingSafeEqual(digest(header.slice(7).trim()), this.tokenDigest);
  }
}

interface Answer {
  status: number;
  body: unknown;
  contentType?: string;
}

/** List items carry no kind or apiVersion, as the API server writes them. */
function withoutTypeMeta(object: KubernetesObject): KubernetesObject {
  const { kind: _kind, apiVersion: _apiVersion, ...rest } = object;
  return rest as KubernetesObject;
}

function lastLines(text: string, count: number): string {
  if (count === 0) return "";
  const lines = text.split("\n");
  const trailing = lines.at(-1) === "" ? lines.pop() : undefined;
  return lines.slice(-count).join("\n") + (trailing !== undefined ? "\n" : "");
}

function truncate(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (error) {
    throw badRequest(`couldn't get version/kind; json parse error: ${(error as Error).message}`);
  }
}

function send(response: ServerResponse, status: number, body: unknown, contentType = "application/json", headers: Record<string, string> = {}): void {
  if (response.headersSent || response.destroyed) return;
  const text = typeof body === "string" ? body : JSON.stringify(body);
  response.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(text), ...headers });
  response.end(text);
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > BODY_LIMIT) {
        reject(new ApiError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728"));
        request.resume();
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}
