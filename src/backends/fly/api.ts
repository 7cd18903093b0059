/**
 * A small client of the Fly Machines API (https://api.machines.dev/v1): one
 * HTTP request through undici, Fly's errors turned into BackendErrors that
 * carry Fly's own text, `fly-request-id` and Retry-After, and requests retried
 * (src/retry.ts) through throttling and lost answers.
 * undici is imported on first use, so a runner importing flame-ts never loads it.
 */
import type * as Undici from "undici";
import { ERROR_CODES } from "../../errors.js";
import { FlyApiError } from "./api-error.js";
import { headerValue, isSuccess, parseBody, stringField } from "../http-response.js";
import { parseRetryAfter, retry, type RetryVerdict } from "../../retry.js";

/** What came back from one request. */
export interface FlyResponse {
  status: number;
  /** Parsed JSON, or the raw text when the body is not JSON, or undefined when empty. */
  body: unknown;
  /** Fly's id for the request, for support tickets and logs. */
  requestId: string | undefined;
  /** Milliseconds the server asked us to wait (Retry-After), if it said. */
  retryAfter: number | undefined;
}

/** What a client needs to talk to the Machines API for one app. */
export interface FlyApiSettings {
  /** API base URL without the /v1 suffix, e.g. https://api.machines.dev. */
  baseUrl: string;
  app: string;
  token: string;
  /** Where the token came from ("option \"token\"" or "FLY_API_TOKEN"), for the 401 message: never the token itself. */
  tokenSource: string;
  /** Longest one request may take, in ms. */
  requestTimeout: number;
}

/** Options of one request. */
export interface SendOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Ms for this one request; defaults to `requestTimeout`. */
  timeout?: number;
  signal?: AbortSignal;
}

/** Options of a request sent until it succeeds or the deadline comes. */
export interface RetriedRequestOptions extends SendOptions {
  /** What the request does, for messages, e.g. "destroy machine 3d8d…". */
  action: string;
  /** Absolute time (ms since epoch) after which no retry starts. */
  deadline: number;
  /** Statuses worth another attempt besides 429 (always retried). */
  retryStatuses?: ReadonlySet<number>;
  /** Statuses that are a success for this call (e.g. 404 for a destroy). */
  acceptStatuses?: ReadonlySet<number>;
}

let undiciModule: Promise<typeof Undici> | undefined;

/** Marks a failure with no response at all (refused, reset, timed out). */
export class NoResponseError extends Error {}

/** Talks to the Machines API about one app; holds no state besides its settings. */
export class FlyApiClient {
  constructor(readonly settings: FlyApiSettings) {}

  /** `/v1/apps/{app}` followed by `suffix`. */
  appPath(suffix = ""): string {
    return `/v1/apps/${encodeURIComponent(this.settings.app)}${suffix}`;
  }

  /** One request. Throws NoResponseError when nothing came back; any status resolves. */
  async send(method: string, path: string, options: SendOptions = {}): Promise<FlyResponse> {
    undiciModule ??= import("undici");
    const { request } = await undiciModule;
    const url = new URL(this.settings.baseUrl.replace(/\/+$/, "") + path);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const timeout = AbortSignal.timeout(options.timeout ?? this.settings.requestTimeout);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    const headers: Record<string, string> = { authorization: authorizationHeader(this.settings.token), accept: "application/json" };
    if (options.body !== undefined) headers["content-type"] = "application/json";
    let response: Undici.Dispatcher.ResponseData;
    let text: string;
    try {
      response = await request(url, {
        method: method as Undici.Dispatcher.HttpMethod,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal,
      });
      text = await response.body.text();
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      const reason = timeout.aborted ? `no answer within ${options.timeout ?? this.settings.requestTimeout} ms` : (error as Error).message;
      throw new NoResponseError(`${method} ${url.pathname}: ${reason}`, { cause: error });
    }
    return {
      status: response.statusCode,
      body: parseBody(text),
      requestId: headerValue(response.headers["fly-request-id"]),
      retryAfter: parseRetryAfter(headerValue(response.headers["retry-after"])),
    };
  }

  /**
   * Sends until a success (2xx or `acceptStatuses`), retrying 429,
   * `retryStatuses` and missing responses with exponential backoff and jitter
   * (or the server's Retry-After) while the next attempt can start before
   * `deadline`. Only for requests that are safe to repeat.
   */
  async request(method: string, path: string, options: RetriedRequestOptions): Promise<FlyResponse> {
    return retry(
      async () => {
        const response = await this.sendAction(options.action, method, path, options);
        if (isSuccess(response.status) || options.acceptStatuses?.has(response.status)) return response;
        throw this.errorFor(response, options.action);
      },
      { deadline: options.deadline, signal: options.signal, shouldRetry: (error) => retryVerdict(error, options.retryStatuses) },
    );
  }

  /** One request for `action`, like `send`, but a missing response is a retryable FlyApiError saying what could not be done. */
  async sendAction(action: string, method: string, path: string, options: SendOptions = {}): Promise<FlyResponse> {
    try {
      return await this.send(method, path, options);
    } catch (error) {
      if (!(error instanceof NoResponseError)) throw error;
      throw new FlyApiError(`could not ${action}: no response from the Fly Machines API at ${this.settings.baseUrl}: ${error.message}`, {
        retryable: true,
        cause: error,
      });
    }
  }

  /** The BackendError for a failed response: 401 names the token, capacity says so, others carry Fly's text. */
  errorFor(response: FlyResponse, action: string): FlyApiError {
    const { status, requestId, retryAfter } = response;
    const flyStatus = stringField(response.body, "status");
    const text = stringField(response.body, "error") ?? (typeof response.body === "string" ? response.body.slice(0, 500) : "");
    const suffix = `${text ? `: ${text}` : ""} (fly-request-id ${requestId ?? "none"})`;
    if (status === 401) {
      return new FlyApiError(
        `could not ${action}: the Fly Machines API rejected the API token from ${this.settings.tokenSource} (HTTP 401)${suffix}. ` +
          `Set a valid token for app "${this.settings.app}", e.g. from \`fly tokens create deploy -a ${this.settings.app}\``,
        { retryable: false, code: ERROR_CODES.FLAME_FLY_UNAUTHORIZED, status, requestId, flyStatus, retryAfter },
      );
    }
    if (isCapacityError(status, flyStatus, text)) {
      return new FlyApiError(`could not ${action}: Fly has insufficient capacity (HTTP ${status})${suffix}`, {
        retryable: true,
        code: ERROR_CODES.FLAME_FLY_CAPACITY,
        status,
        requestId,
        flyStatus,
        retryAfter,
      });
    }
    if (status === 404 && text.toLowerCase().includes("app")) {
      return new FlyApiError(`could not ${action}: Fly app "${this.settings.app}" not found (HTTP 404)${suffix}`, {
        retryable: false,
        code: ERROR_CODES.FLAME_FLY_INVALID_CONFIGURATION,
        status,
        requestId,
        flyStatus,
        retryAfter,
      });
    }
    // Throttling, conflicts (409/412/422 come from a busy host or app) and server errors may pass; other requests Fly finds wrong stay wrong.
    const retryable = status === 429 || status === 409 || status === 412 || status === 422 || status >= 500;
    return new FlyApiError(`could not ${action}: Fly Machines API answered HTTP ${status}${suffix}`, {
      retryable,
      // Throttled until the deadline is throttling, whichever side (the backend's pacing or Fly's 429) said so.
      ...(status === 429 ? { code: ERROR_CODES.FLAME_FLY_THROTTLED } : {}),
      status,
      requestId,
      flyStatus,
      retryAfter,
    });
  }
}

/** Whether a lost answer (see `sendAction`) caused this failure: the request may or may not have been handled. */
export function isNoResponse(error: unknown): boolean {
  return error instanceof FlyApiError && error.cause instanceof NoResponseError;
}

/**
 * Whether a failed request is worth sending again: a missing response, 429,
 * or a status in `retryStatuses`; after Fly's Retry-After when it gave one.
 */
export function retryVerdict(error: unknown, retryStatuses?: ReadonlySet<number>): RetryVerdict {
  if (!(error instanceof FlyApiError)) return false;
  if (isNoResponse(error)) return true;
  if (error.status === undefined || !(error.status === 429 || retryStatuses?.has(error.status))) return false;
  return error.retryAfter !== undefined ? { after: error.retryAfter } : true;
}

/** Fly accepts `Bearer <token>`; tokens made by `fly tokens create` already start with their scheme ("FlyV1 ..."). */
function authorizationHeader(token: string): string {
  return /^FlyV1 /.test(token) ? token : `Bearer ${token}`;
}

function isCapacityError(status: number, flyStatus: string | undefined, text: string): boolean {
  if (flyStatus === "insufficient_capacity") return true;
  return status >= 400 && /insufficient (capacity|resources|memory)|no capacity/i.test(text);
}
