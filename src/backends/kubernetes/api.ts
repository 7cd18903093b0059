/**
 * A thin client of the Kubernetes API on undici, as the Fly backend's is.
 *
 * Why not `@kubernetes/client-node`: its 2.x line needs Node 22 (its undici 8
 * fails at import on Node 20, which flame-ts supports), 1.x drags in a large
 * dependency tree a runner image would carry, and the backend needs six
 * endpoints and one watch. The parts of client-go worth having (kubeconfig,
 * exec plugins, rotating service-account tokens) are in credentials.ts.
 *
 * The API server's Status objects become KubernetesApiErrors carrying its
 * `reason` and message; 401 names where the credentials came from, 403 names
 * the RBAC verb and resource the parent's Role lacks.
 */
import type * as Undici from "undici";
import { ERROR_CODES } from "../../errors.js";
import { KubernetesApiError } from "./api-error.js";
import { headerValue, isSuccess, parseBody, stringField } from "../http-response.js";
import { parseRetryAfter, retry, type RetryVerdict } from "../../retry.js";
import type { ClusterCredentials } from "./credentials.js";

/** What one request asks for, in RBAC's words, for 403 messages and the recorded-RBAC test. */
export interface RbacAction {
  verb: "get" | "list" | "watch" | "create" | "patch" | "delete";
  /** Resource, with its subresource if any: "pods", "secrets", "pods/log". */
  resource: string;
  /** API group: "" for core. */
  group?: string;
}

export interface KubernetesResponse {
  status: number;
  body: unknown;
  retryAfter: number | undefined;
}

export interface SendOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  timeout?: number;
  signal?: AbortSignal;
}

export interface RetriedRequestOptions extends SendOptions {
  /** For messages, e.g. "create pod flame-r-1". */
  action: string;
  rbac: RbacAction;
  namespace: string;
  deadline: number;
  /** Statuses that count as success for this request (404 for a delete). */
  acceptStatuses?: ReadonlySet<number>;
}

let undiciModule: Promise<typeof Undici> | undefined;

/** Statuses worth another attempt: conflicts, throttling and the server's own failures. */
const RETRY_STATUSES = new Set([409, 429, 500, 502, 503, 504]);

/** Talks to one API server with one set of credentials. */
export class KubernetesApiClient {
  private dispatcher: Undici.Dispatcher | undefined;

  constructor(
    readonly credentials: ClusterCredentials,
    readonly requestTimeout: number,
  ) {}

  /** One request: any status resolves; no response at all throws a retryable KubernetesApiError. */
  async send(method: string, path: string, action: string, options: SendOptions = {}): Promise<KubernetesResponse> {
    const { request } = await undici();
    const url = this.url(path, options.query);
    const timeoutMs = options.timeout ?? this.requestTimeout;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    try {
      const response = await request(url, {
        method: method as Undici.Dispatcher.HttpMethod,
        headers: await this.headers(options),
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        dispatcher: await this.agent(),
        signal,
      });
      const text = await response.body.text();
      return { status: response.statusCode, body: parseBody(text), retryAfter: parseRetryAfter(headerValue(response.headers["retry-after"])) };
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      const reason = timeout.aborted ? `no answer within ${timeoutMs} ms` : (error as Error).message;
      throw new KubernetesApiError(`could not ${action}: no response from the Kubernetes API at ${this.credentials.server}: ${reason}`, { retryable: true, cause: error });
    }
  }

  /**
   * Sends until a success (2xx or `acceptStatuses`), retrying 409, 429, 5xx
   * and lost answers with backoff (or Retry-After) while the next attempt can
   * start before the deadline. For requests that are safe to repeat.
   */
  async request(method: string, path: string, options: RetriedRequestOptions): Promise<KubernetesResponse> {
    return retry(
      async () => {
        const response = await this.send(method, path, options.action, options);
        if (isSuccess(response.status) || options.acceptStatuses?.has(response.status)) return response;
        throw this.errorFor(response, options);
      },
      {
        deadline: options.deadline,
        signal: options.signal,
        shouldRetry: retryVerdict,
      },
    );
  }

  /** A streaming GET (a watch): resolves once the headers are in, with the status and the body to read. */
  async stream(path: string, query: SendOptions["query"], signal: AbortSignal): Promise<{ status: number; body: AsyncIterable<Buffer>; text(): Promise<string> }> {
    const { request } = await undici();
    const response = await request(this.url(path, query), {
      method: "GET",
      headers: await this.headers({}),
      dispatcher: await this.agent(),
      signal,
      // The server ends a watch after its timeoutSeconds; between events it may be quiet for minutes.
      bodyTimeout: 0,
      headersTimeout: this.requestTimeout,
    });
    return { status: response.statusCode, body: response.body, text: () => response.body.text() };
  }

  /** The error for a failed response, in the words of the API server, with what to do about 401 and 403. */
  errorFor(response: KubernetesResponse, options: Pick<RetriedRequestOptions, "action" | "rbac" | "namespace">): KubernetesApiError {
    const { status, retryAfter } = response;
    const reason = stringField(response.body, "reason");
    const serverMessage = stringField(response.body, "message") ?? (typeof response.body === "string" ? response.body.slice(0, 500) : "");
    const said = serverMessage ? `: ${serverMessage}` : "";
    const base = { status, reason, retryAfter };
    if (status === 401) {
      return new KubernetesApiError(
        `could not ${options.action}: the Kubernetes API rejected the credentials from ${this.credentials.source} (HTTP 401)${said}`,
        { ...base, retryable: false, code: ERROR_CODES.FLAME_KUBERNETES_UNAUTHORIZED },
      );
    }
    if (status === 403) {
      const { verb, resource, group = "" } = options.rbac;
      return new KubernetesApiError(
        `could not ${options.action}: forbidden (HTTP 403)${said}. The parent's Role in namespace "${options.namespace}" needs verb "${verb}" on resource "${resource}"` +
          `${group ? ` in API group "${group}"` : ""} (see infra/kubernetes/rbac.yaml)`,
        { ...base, retryable: false, code: ERROR_CODES.FLAME_KUBERNETES_UNAUTHORIZED },
      );
    }
    if (status === 429) {
      return new KubernetesApiError(`could not ${options.action}: the Kubernetes API is throttling requests (HTTP 429)${said}`, {
        ...base,
        retryable: true,
        code: ERROR_CODES.FLAME_KUBERNETES_THROTTLED,
      });
    }
    const invalid = status === 400 || status === 422 || status === 404;
    return new KubernetesApiError(`could not ${options.action}: the Kubernetes API answered HTTP ${status}${reason ? ` ${reason}` : ""}${said}`, {
      ...base,
      retryable: RETRY_STATUSES.has(status),
      code: invalid ? ERROR_CODES.FLAME_KUBERNETES_INVALID_CONFIGURATION : ERROR_CODES.FLAME_KUBERNETES_FAILED,
    });
  }

  /** Closes the connections this client keeps open. */
  async close(): Promise<void> {
    await this.dispatcher?.close();
    this.dispatcher = undefined;
  }

  private url(path: string, query: SendOptions["query"] = {}): URL {
    const url = new URL(this.credentials.server.replace(/\/+$/, "") + path);
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    return url;
  }

  private async headers(options: SendOptions): Promise<Record<string, string>> {
    const headers: Record<string, string> = { accept: "application/json" };
    const token = await this.credentials.token();
    if (token) headers.authorization = `Bearer ${token}`;
    if (options.body !== undefined) headers["content-type"] = options.contentType ?? "application/json";
    return headers;
  }

  /** One connection pool per client, trusting the cluster's CA and presenting the client certificate if any. */
  private async agent(): Promise<Undici.Dispatcher> {
    if (this.dispatcher) return this.dispatcher;
    const { Agent } = await undici();
    const { ca, insecureSkipTlsVerify, tlsServerName, clientCertificate } = this.credentials;
    this.dispatcher = new Agent({
      connect: {
        ...(ca ? { ca } : {}),
        ...(clientCertificate ? { cert: clientCertificate.cert, key: clientCertificate.key } : {}),
        ...(tlsServerName ? { servername: tlsServerName } : {}),
        rejectUnauthorized: !insecureSkipTlsVerify,
      },
    });
    return this.dispatcher;
  }
}

/** Whether a failed request is worth another attempt: a retryable KubernetesApiError, after the server's Retry-After if it gave one. */
export function retryVerdict(error: unknown): RetryVerdict {
  if (!(error instanceof KubernetesApiError) || !error.retryable) return false;
  return error.retryAfter !== undefined ? { after: error.retryAfter } : true;
}

/** undici is imported on first use, so a runner importing flame-ts never loads it. */
function undici(): Promise<typeof Undici> {
  undiciModule ??= import("undici");
  return undiciModule;
}
