/**
 * The parent's OpenTelemetry span for one call: a CLIENT span named after the
 * function, with the RPC attributes of OpenTelemetry's semantic conventions,
 * and a child span for the time the call waited in the queue, which links to
 * the boot it waited for, if it did (a boot is its own trace: boot-trace.ts).
 * Its context is injected into a carrier that travels in the call frame, so
 * the runner's span for the execution is its child.
 *
 * Made only when the app registered an SDK (opentelemetry.ts) and the span
 * records or carries a valid context; every other call has no CallTrace at all.
 */
import type { Span } from "@opentelemetry/api";
import { sendableTraceContext } from "../protocol/validate.js";
import type { TraceContextCarrier } from "../protocol/messages.js";
import { bootSpanOf } from "./boot-trace.js";
import { errorType } from "./error-type.js";
import { flameTracer, openTelemetry, type OpenTelemetry } from "./opentelemetry.js";

/** `rpc.system.name`: flame-ts is its own RPC system (the conventions allow values they do not list). */
export const RPC_SYSTEM = "flame-ts";

/** What a call span needs to know of the runner that took the call. */
export interface PlacedOn {
  id: string;
  /** performance.now() when it became ready (undefined: not yet). */
  readyAt: number | undefined;
}

export interface CallTraceSettings {
  pool: string;
  functionId: string;
}

export class CallTrace {
  /** The carrier to put in the call frame; undefined when the propagator wrote nothing the protocol carries. */
  readonly traceContext: TraceContextCarrier | undefined;

  private constructor(
    private readonly api: OpenTelemetry,
    private readonly span: Span,
    private readonly settings: CallTraceSettings,
  ) {
    const carrier: Record<string, unknown> = {};
    api.propagation.inject(api.trace.setSpan(api.context.active(), span), carrier);
    this.traceContext = sendableTraceContext(carrier);
  }

  /** Starts the span of a call, or returns undefined when nothing is traced (no SDK, or a span that neither records nor propagates). */
  static start(settings: CallTraceSettings): CallTrace | undefined {
    const api = openTelemetry();
    if (!api) return undefined;
    const span = flameTracer(api).startSpan(settings.functionId, {
      kind: api.SpanKind.CLIENT,
      attributes: { "rpc.system.name": RPC_SYSTEM, "rpc.method": settings.functionId, "flame.pool": settings.pool },
    });
    // A span that is not sampled still carries its trace (and the decision) to the runner.
    if (!span.isRecording() && !api.trace.isSpanContextValid(span.spanContext())) return undefined;
    return new CallTrace(api, span, settings);
  }

  /**
   * The call is on `runner`, after waiting for one since `queuedAt`
   * (performance.now(); undefined: it did not wait): records its queue span,
   * which links to the runner's boot span (boot-trace.ts) when the runner
   * became ready while the call waited.
   */
  placed(runner: PlacedOn, queuedAt: number | undefined): void {
    const now = performance.now();
    this.span.setAttribute("flame.runner.id", runner.id);
    if (queuedAt === undefined || !this.span.isRecording()) return;
    const parent = this.api.trace.setSpan(this.api.context.active(), this.span);
    const boot = runner.readyAt !== undefined && runner.readyAt >= queuedAt ? bootSpanOf(runner) : undefined;
    flameTracer(this.api)
      .startSpan(
        "flame.queue",
        {
          startTime: queuedAt,
          attributes: { "flame.pool": this.settings.pool },
          ...(boot ? { links: [{ context: boot, attributes: { "flame.runner.id": runner.id } }] } : {}),
        },
        parent,
      )
      .end(now);
  }

  /** Ends the span: ERROR status and `error.type` when the call failed. */
  finished(error?: Error): void {
    if (error) {
      this.span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: error.message });
      this.span.setAttribute("error.type", errorType(error));
    }
    this.span.end();
  }
}
