/**
 * The parent's OpenTelemetry span for one call: a CLIENT span named after the
 * function, with the RPC attributes of OpenTelemetry's semantic conventions,
 * child spans for the time the call waited in the queue and, when it waited
 * for a runner to boot, that boot. Its context is injected into a carrier that
 * travels in the call frame, so the runner's span for the execution is its child.
 *
 * Made only when the app registered an SDK (opentelemetry.ts) and the span
 * records or carries a valid context; every other call has no CallTrace at all.
 */
import type { Span } from "@opentelemetry/api";
import { sendableTraceContext } from "../protocol/validate.js";
import type { TraceContextCarrier } from "../protocol/messages.js";
import { errorType } from "./error-type.js";
import { flameTracer, openTelemetry, type OpenTelemetry } from "./opentelemetry.js";

/** `rpc.system.name`: flame-ts is its own RPC system (the conventions allow values they do not list). */
export const RPC_SYSTEM = "flame-ts";

/** What a call span needs to know of the runner that took the call. */
export interface PlacedOn {
  id: string;
  /** performance.now() when its boot started, and when it became ready (undefined: not yet). */
  bootStartedAt: number;
  readyAt: number | undefined;
}

export interface CallTraceSettings {
  pool: string;
  functionId: string;
  /** The backend's name, for the boot span. */
  backend: string;
}

export class CallTrace {
  /** The carrier to put in the call frame; undefined when the propagator wrote nothing the protocol carries. */
  readonly traceContext: TraceContextCarrier | undefined;
  private readonly startedAt = performance.now();
  private queuedAt: number | undefined;

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

  /** The call waits for a runner from now. */
  queued(): void {
    this.queuedAt ??= performance.now();
  }

  /** The call is on `runner`: ends its queue span, and adds the boot it waited for, if it did. */
  placed(runner: PlacedOn): void {
    const now = performance.now();
    this.span.setAttribute("flame.runner.id", runner.id);
    if (this.queuedAt === undefined || !this.span.isRecording()) return;
    const parent = this.api.trace.setSpan(this.api.context.active(), this.span);
    const tracer = flameTracer(this.api);
    tracer.startSpan("flame.queue", { startTime: this.queuedAt, attributes: { "flame.pool": this.settings.pool } }, parent).end(now);
    // The runner became ready while the call waited: the call waited for that boot.
    if (runner.readyAt !== undefined && runner.readyAt >= this.queuedAt) {
      tracer
        .startSpan(
          "flame.boot",
          {
            // A boot that began before the call (another caller's) is shown from the call's start.
            startTime: Math.max(runner.bootStartedAt, this.startedAt),
            attributes: {
              "flame.pool": this.settings.pool,
              "flame.runner.id": runner.id,
              "flame.backend": this.settings.backend,
              "flame.boot.duration": (runner.readyAt - runner.bootStartedAt) / 1000,
            },
          },
          parent,
        )
        .end(runner.readyAt);
    }
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
