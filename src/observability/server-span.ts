/**
 * The runner's OpenTelemetry span for one call: a SERVER span, child of the
 * caller's span (its context came in the call frame), active while the
 * function runs, so the spans the function makes nest under it.
 *
 * Only calls that carry a trace context get here, and the API is loaded only
 * if the app registered an SDK on the runner too (opentelemetry.ts): an
 * untraced runner never loads it.
 */
import type { TraceContextCarrier } from "../protocol/messages.js";
import { RPC_SYSTEM } from "./call-trace.js";
import { errorType } from "./error-type.js";
import { flameTracer, openTelemetry } from "./opentelemetry.js";

export interface ServerSpanSettings {
  pool: string;
  functionId: string;
  runnerId: string;
  /** The runner's worker thread running the call; 0 (the main thread) is not recorded. */
  thread: number;
}

/** Runs `run` inside a SERVER span continuing `traceContext`; resolves or rejects as `run` does. */
export async function inServerSpan<T>(traceContext: TraceContextCarrier, settings: ServerSpanSettings, run: () => T): Promise<Awaited<T>> {
  const api = openTelemetry();
  if (!api) return await run();
  const callerContext = api.propagation.extract(api.ROOT_CONTEXT, traceContext);
  const span = flameTracer(api).startSpan(
    settings.functionId,
    {
      kind: api.SpanKind.SERVER,
      attributes: {
        "rpc.system.name": RPC_SYSTEM,
        "rpc.method": settings.functionId,
        "flame.pool": settings.pool,
        "flame.runner.id": settings.runnerId,
        ...(settings.thread > 0 ? { "flame.runner.thread": settings.thread } : {}),
      },
    },
    callerContext,
  );
  try {
    return await api.context.with(api.trace.setSpan(callerContext, span), run);
  } catch (error) {
    span.setStatus({ code: api.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    span.setAttribute("error.type", errorType(error));
    throw error;
  } finally {
    span.end();
  }
}
