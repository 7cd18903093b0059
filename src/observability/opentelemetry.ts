/**
 * The optional OpenTelemetry API. flame-ts depends on `@opentelemetry/api`
 * only as an optional peer (OpenTelemetry's advice to libraries: the API,
 * never an SDK): when the app has not installed it, every caller here gets
 * undefined and flame-ts traces nothing.
 *
 * Loaded only once the app has registered something with it (a tracer
 * provider, a propagator, a context manager): every copy of the API keeps
 * what is registered on one global, under a symbol named after its major
 * version, so reading that global tells, for the price of a property read,
 * whether there is anything to report to. Until then flame-ts does not load
 * the package at all: it takes 2-30 ms to load (as long as `ws`), which a
 * runner's cold start or a parent's first call would otherwise pay for nothing.
 * Then it is required synchronously, once; in Node, `import` and `require`
 * of the API resolve to the same CommonJS file, so this is usually the very
 * module the app loaded.
 */
import { createRequire } from "node:module";
import type * as OpenTelemetryApi from "@opentelemetry/api";
import type { Tracer } from "@opentelemetry/api";

export type OpenTelemetry = typeof OpenTelemetryApi;

/** The name the package is required by; not a literal in `import()`, so bundlers leave it to the app. */
const PACKAGE = "@opentelemetry/api";

/** Where API 1.x keeps what the app registered (see its internal/global-utils). */
const REGISTRY = Symbol.for("opentelemetry.js.api.1");

/** Undefined until loaded; null when the package could not be loaded. */
let loaded: OpenTelemetry | null | undefined;

/**
 * The OpenTelemetry API once the app has registered something with it;
 * undefined before that, and when the package is not installed.
 */
export function openTelemetry(): OpenTelemetry | undefined {
  if (loaded === undefined) {
    if ((globalThis as Record<symbol, unknown>)[REGISTRY] === undefined) return undefined;
    try {
      loaded = createRequire(import.meta.url)(PACKAGE) as OpenTelemetry;
    } catch {
      loaded = null;
    }
  }
  return loaded ?? undefined;
}

/** The name flame-ts' tracer and meter go by (the instrumentation scope). */
export const INSTRUMENTATION_SCOPE = "flame-ts";

/**
 * Asks the registered SDK to export what it still holds (a batching span
 * processor keeps spans for seconds), for at most `timeout` ms. A runner
 * exits right after it is told to shut down: without this, its last spans
 * and metrics would go with it. Does nothing when the app registered nothing.
 */
export async function flushTelemetry(timeout: number): Promise<void> {
  // An app that registered an SDK has loaded the API: this is a cache hit, not a load.
  const api = openTelemetry();
  if (!api) return;
  type Flushable = { forceFlush?: () => Promise<void>; getDelegate?: () => Flushable };
  const tracerProvider = api.trace.getTracerProvider() as Flushable;
  const providers = [tracerProvider.getDelegate?.() ?? tracerProvider, api.metrics.getMeterProvider() as Flushable];
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeout)));
  const flushes = providers.map((provider) => Promise.resolve(provider.forceFlush?.()).catch(() => undefined));
  await Promise.race([Promise.all(flushes), deadline]);
  clearTimeout(timer);
}

let cachedTracer: Tracer | undefined;

/**
 * flame-ts' tracer, taken once: the API's tracer is a proxy that finds the
 * registered provider when there is one, so a provider registered later is still used.
 */
export function flameTracer(api: OpenTelemetry): Tracer {
  return (cachedTracer ??= api.trace.getTracer(INSTRUMENTATION_SCOPE));
}
