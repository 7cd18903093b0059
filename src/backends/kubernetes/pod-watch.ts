/**
 * One watch on a parent's runner pods, shared by all its boots: the API
 * server pushes every change (no polling), and each boot hears about its own
 * pod. A watch that ends (the server's timeout, a lost connection) resumes
 * from the last resourceVersion; one the server no longer remembers (410
 * Expired) starts over with a list. The watch runs only while some pod is
 * followed, so an idle parent holds no connection open.
 */
import { backoffDelay, sleep } from "../../retry.js";
import { parseBody } from "../http-response.js";
import type { Logger } from "../../log.js";
import type { KubernetesApiClient } from "./api.js";
import type { PodObject } from "./pod-status.js";

/** Called with a pod's newest state, or undefined once it is gone. */
export type PodListener = (pod: PodObject | undefined) => void;

/** Seconds after which the server ends a watch and it is resumed: short enough that a silently lost connection is noticed. */
const WATCH_SECONDS = 60;
/** The longest watch event line taken: a pod is a few KiB; anything past this is not one. */
const MAX_EVENT_BYTES = 4 * 1024 * 1024;

class WatchExpired extends Error {}

export class PodWatch {
  private readonly listeners = new Map<string, PodListener>();
  /** Followed pods the API server has shown to exist: only these can be missed as deleted by a list. */
  private readonly seen = new Set<string>();
  private resourceVersion: string | undefined;
  private loop: Promise<void> | undefined;
  private abort: AbortController | undefined;

  constructor(
    private readonly api: KubernetesApiClient,
    private readonly namespace: string,
    private readonly selector: string,
    private readonly log: Logger,
  ) {}

  /** Follows pod `name`; returns a function that stops following it. */
  follow(name: string, listener: PodListener): () => void {
    this.listeners.set(name, listener);
    // A loop told to stop (its last pod unfollowed) may not have ended yet: it will not deliver, so start another.
    if (!this.loop || this.abort?.signal.aborted) {
      const abort = new AbortController();
      this.abort = abort;
      this.loop = this.run(abort.signal).finally(() => {
        if (this.abort === abort) {
          this.loop = undefined;
          this.abort = undefined;
        }
      });
    }
    return () => {
      if (this.listeners.get(name) !== listener) return;
      this.listeners.delete(name);
      this.seen.delete(name);
      if (this.listeners.size === 0) this.abort?.abort();
    };
  }

  private async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted && this.listeners.size > 0) {
      try {
        if (this.resourceVersion === undefined) await this.relist(signal);
        await this.watchOnce(signal);
        failures = 0;
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof WatchExpired) {
          this.log.debug({}, "runner pod watch expired (410); listing again");
          this.resourceVersion = undefined;
          continue;
        }
        failures += 1;
        const delay = backoffDelay(failures, 200, 5_000);
        this.log.warn({ err: error }, `runner pod watch failed (${(error as Error).message}); resuming in ${delay} ms`);
        await sleep(delay, signal).catch(() => undefined);
      }
    }
  }

  /** The current state of every pod, for a start or a restart after 410: changes missed meanwhile are not lost. */
  private async relist(signal: AbortSignal): Promise<void> {
    const path = `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods`;
    const response = await this.api.request("GET", path, {
      query: { labelSelector: this.selector },
      action: "list runner pods",
      rbac: { verb: "list", resource: "pods" },
      namespace: this.namespace,
      deadline: Date.now() + 10_000,
      signal,
    });
    const list = response.body as { metadata?: { resourceVersion?: unknown }; items?: unknown };
    const items = Array.isArray(list?.items) ? (list.items as PodObject[]) : [];
    const present = new Set<string>();
    for (const pod of items) {
      const name = pod?.metadata?.name;
      if (typeof name !== "string") continue;
      present.add(name);
      this.deliver(name, pod);
    }
    // A pod seen before and absent now was deleted while the watch was down. One never seen may not be created yet.
    for (const name of [...this.seen]) if (!present.has(name)) this.deliver(name, undefined);
    this.resourceVersion = typeof list?.metadata?.resourceVersion === "string" ? list.metadata.resourceVersion : "";
  }

  private async watchOnce(signal: AbortSignal): Promise<void> {
    const path = `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods`;
    const stream = await this.api.stream(
      path,
      { labelSelector: this.selector, watch: 1, resourceVersion: this.resourceVersion || undefined, allowWatchBookmarks: true, timeoutSeconds: WATCH_SECONDS },
      signal,
    );
    if (stream.status === 410) throw new WatchExpired();
    if (stream.status < 200 || stream.status >= 300) {
      const text = await stream.text().catch(() => "");
      throw this.api.errorFor({ status: stream.status, body: parseBody(text), retryAfter: undefined }, {
        action: "watch runner pods",
        rbac: { verb: "watch", resource: "pods" },
        namespace: this.namespace,
      });
    }
    let pending = "";
    for await (const chunk of stream.body) {
      pending += chunk.toString("utf8");
      if (pending.length > MAX_EVENT_BYTES) throw new Error(`a watch event over ${MAX_EVENT_BYTES} bytes`);
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line) this.onEvent(line);
      }
    }
  }

  /** One watch event, from the network: checked before anything is read from it. */
  private onEvent(line: string): void {
    // A line that is not JSON parses as its text, which the check below refuses.
    const event = parseBody(line) as { type?: unknown; object?: PodObject & { code?: unknown; message?: unknown } } | undefined;
    if (!event || typeof event.type !== "string" || typeof event.object !== "object" || event.object === null) throw new Error("a malformed watch event");
    const { type, object } = event;
    if (type === "ERROR") {
      if (object.code === 410) throw new WatchExpired();
      throw new Error(`the watch reported an error: ${typeof object.message === "string" ? object.message : "no message"}`);
    }
    const resourceVersion = object.metadata?.resourceVersion;
    if (typeof resourceVersion === "string") this.resourceVersion = resourceVersion;
    if (type === "BOOKMARK") return;
    const name = object.metadata?.name;
    if (typeof name !== "string") return;
    this.deliver(name, type === "DELETED" ? undefined : object);
  }

  private deliver(name: string, pod: PodObject | undefined): void {
    const listener = this.listeners.get(name);
    if (!listener) return;
    if (pod) this.seen.add(name);
    else this.seen.delete(name);
    listener(pod);
  }
}
