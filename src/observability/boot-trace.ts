/**
 * The OpenTelemetry trace of a runner's boot. On the parent, `flame.boot`: a
 * span from the pool's decision to boot until the runner connected or the
 * boot failed, the root of its own trace (a boot serves every call that waits
 * for it, and may begin before any of them: for `min`, or as a retry). Its
 * context travels to the runner in FLAME_PARENT, where the load of the app's
 * entry module becomes its child, `flame.runner.load_entry`. Calls that waited
 * for the boot link to it from their `flame.queue` span (call-trace.ts).
 *
 * The entry module is what registers the runner's SDK, so nothing can record
 * while it loads: the load span is recorded once the import has returned,
 * with the start and end times measured around it.
 */
import type { Span, SpanContext } from "@opentelemetry/api";
import type { TraceContextCarrier } from "../protocol/messages.js";
import { sendableTraceContext } from "../protocol/validate.js";
import { errorType } from "./error-type.js";
import { flameTracer, openTelemetry, type OpenTelemetry } from "./opentelemetry.js";

export interface BootTraceSettings {
  pool: string;
  runnerId: string;
  /** The backend's name (`process`, `fly`, ...). */
  backend: string;
}

/** The boot spans of runners, by runner, for the calls that waited for them to link to. */
const bootSpans = new WeakMap<object, SpanContext>();

/** The context of the span of `runner`'s boot, if it was traced. */
export function bootSpanOf(runner: object): SpanContext | undefined {
  return bootSpans.get(runner);
}

export class BootTrace {
  /** The carrier for the runner's start environment; undefined when the propagator wrote nothing the protocol carries. */
  readonly traceContext: TraceContextCarrier | undefined;
  private readonly startedAt = performance.now();

  private constructor(
    private readonly api: OpenTelemetry,
    private readonly span: Span,
  ) {
    const carrier: Record<string, unknown> = {};
    api.propagation.inject(api.trace.setSpan(api.ROOT_CONTEXT, span), carrier);
    this.traceContext = sendableTraceContext(carrier);
  }

  /** Starts the span of `runner`'s boot, or returns undefined when nothing is traced. */
  static start(runner: object, settings: BootTraceSettings): BootTrace | undefined {
    const api = openTelemetry();
    if (!api) return undefined;
    const span = flameTracer(api).startSpan("flame.boot", {
      root: true,
      attributes: { "flame.pool": settings.pool, "flame.runner.id": settings.runnerId, "flame.backend": settings.backend },
    });
    if (!span.isRecording() && !api.trace.isSpanContextValid(span.spanContext())) return undefined;
    bootSpans.set(runner, span.spanContext());
    return new BootTrace(api, span);
  }

  /** Ends the span: `flame.boot.outcome` "ok", or "error" with ERROR status and `error.type`. */
  ended(error?: Error): void {
    this.span.setAttribute("flame.boot.outcome", error ? "error" : "ok");
    this.span.setAttribute("flame.boot.duration", (performance.now() - this.startedAt) / 1000);
    if (error) {
      this.span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: error.message });
      this.span.setAttribute("error.type", errorType(error));
    }
    this.span.end();
  }
}

export interface EntryLoad {
  pool: string;
  runnerId: string;
  /** The boot span's context, from FLAME_PARENT (already validated). */
  traceContext: TraceContextCarrier;
  /** performance.now() before the import began, and after it settled. */
  startedAt: number;
  endedAt: number;
  error?: unknown;
}

/**
 * Records `flame.runner.load_entry` on the runner, as a child of the parent's
 * boot span, once the import has settled. Does nothing when the app registered
 * nothing (the API is then never loaded).
 */
export function recordEntryLoad(load: EntryLoad): void {
  const api = openTelemetry();
  if (!api) return;
  const parent = api.propagation.extract(api.ROOT_CONTEXT, load.traceContext);
  const span = flameTracer(api).startSpan(
    "flame.runner.load_entry",
    { startTime: load.startedAt, attributes: { "flame.pool": load.pool, "flame.runner.id": load.runnerId } },
    parent,
  );
  if (load.error !== undefined) {
    span.setStatus({ code: api.SpanStatusCode.ERROR, message: load.error instanceof Error ? load.error.message : String(load.error) });
    span.setAttribute("error.type", errorType(load.error));
  }
  span.end(load.endedAt);
}
