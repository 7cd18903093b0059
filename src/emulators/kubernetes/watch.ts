/**
 * Watch streams: a chunked response of newline-delimited JSON events
 * (`{"type":"ADDED","object":{...}}`), as the API server writes them.
 *
 * From a resourceVersion, every change after it is sent (or one ERROR event,
 * 410 Expired, when the store has forgotten some of them, and the stream
 * ends); without one (or from "0"), the current objects are sent as ADDED
 * first. An object that starts or stops matching the selector is ADDED or
 * DELETED for this watch, as the watch cache reports it. BOOKMARK events
 * carry only the newest resourceVersion.
 */
import type { ServerResponse } from "node:http";
import type { ResourceType } from "./resources.js";
import type { KubernetesObject, Selector } from "./selectors.js";
import { statusObject } from "./status.js";
import type { ObjectStore, StoreEvent } from "./store.js";

/** What one watch asked for. */
export interface WatchRequest {
  resource: ResourceType;
  /** Undefined: all namespaces. */
  namespace: string | undefined;
  selector: Selector;
  /** The resourceVersion to send changes after; undefined or "0" for "current state first". */
  resourceVersion: string | undefined;
  allowBookmarks: boolean;
  /** sendInitialEvents=true: the current objects first whatever the resourceVersion, then a BOOKMARK marking their end. */
  sendInitialEvents: boolean;
  /** Ms after which the server ends the stream cleanly; undefined for never. */
  timeout: number | undefined;
}

/** The open watch streams of an emulator. */
export class WatchStreams {
  private readonly open = new Set<ServerResponse>();

  constructor(
    private readonly store: ObjectStore,
    /** Ms between BOOKMARK events on watches that allow them. */
    private readonly bookmarkInterval: number,
    private readonly present: (object: KubernetesObject) => KubernetesObject,
  ) {}

  /** How many watches are open now. */
  get count(): number {
    return this.open.size;
  }

  /** Serves one watch until the client goes, the timeout passes, or the stream is dropped. */
  serve(request: WatchRequest, response: ServerResponse): void {
    const { resource, namespace, selector } = request;
    const inScope = (object: KubernetesObject) => namespace === undefined || object.metadata.namespace === namespace;
    const write = (type: string, object: unknown) => {
      if (!response.writableEnded && !response.destroyed) response.write(`${JSON.stringify({ type, object })}\n`);
    };
    const send = (event: StoreEvent) => {
      if (event.resource !== resource.name || !inScope(event.object)) return;
      const now = selector(event.object);
      const before = event.previous ? selector(event.previous) : false;
      const type = event.type === "MODIFIED" ? (now && before ? "MODIFIED" : now ? "ADDED" : before ? "DELETED" : undefined) : now ? event.type : undefined;
      if (type) write(type, this.present(event.object));
    };
    response.writeHead(200, { "content-type": "application/json", "cache-control": "no-cache, private", "transfer-encoding": "chunked" });
    response.flushHeaders();
    const from = request.resourceVersion;
    if (from === undefined || from === "0" || request.sendInitialEvents) {
      for (const object of this.store.list(resource.name, namespace)) if (selector(object)) write("ADDED", this.present(object));
      if (request.sendInitialEvents) {
        write("BOOKMARK", { kind: resource.kind, apiVersion: "v1", metadata: { resourceVersion: this.store.resourceVersion, annotations: { "k8s.io/initial-events-end": "true" } } });
      }
    } else {
      const missed = this.store.eventsAfter(Number(from));
      if (missed === "expired") {
        write("ERROR", statusObject(410, "Expired", `too old resource version: ${from} (${this.store.oldestWatchable})`));
        response.end();
        return;
      }
      for (const event of missed) send(event);
    }
    const unsubscribe = this.store.subscribe(send);
    this.open.add(response);
    const timers: NodeJS.Timeout[] = [];
    if (request.allowBookmarks) {
      const bookmark = setInterval(() => write("BOOKMARK", { kind: resource.kind, apiVersion: "v1", metadata: { resourceVersion: this.store.resourceVersion } }), this.bookmarkInterval);
      timers.push(bookmark);
    }
    if (request.timeout !== undefined) timers.push(setTimeout(() => response.end(), request.timeout));
    const cleanUp = () => {
      unsubscribe();
      for (const timer of timers) clearTimeout(timer);
      this.open.delete(response);
    };
    response.once("close", cleanUp);
    response.once("finish", cleanUp);
    response.on("error", cleanUp);
  }

  /** Ends every open watch abruptly, its socket destroyed without a last chunk, as a lost connection does. */
  dropAll(): void {
    for (const response of this.open) response.socket?.destroy();
  }

  /** Ends every open watch cleanly. */
  endAll(): void {
    for (const response of this.open) response.end();
  }
}
