/**
 * Log lines that say which trace they belong to: while an OpenTelemetry span
 * is active, each entry gets `trace_id` and `span_id` (the names of
 * OpenTelemetry's log data model, which pino's instrumentation uses too).
 * Costs a property read per line until the app registers an SDK.
 */
import type { Logger } from "../log.js";
import { openTelemetry } from "./opentelemetry.js";

/** The active span's ids, if an SDK is registered and a valid span is active. */
export function activeTraceIds(): { traceId: string; spanId: string } | undefined {
  const api = openTelemetry();
  const span = api?.trace.getActiveSpan();
  if (!api || !span) return undefined;
  const context = span.spanContext();
  return api.trace.isSpanContextValid(context) ? { traceId: context.traceId, spanId: context.spanId } : undefined;
}

/** `log` with the active span's ids added to every entry's fields (fields the caller set win). */
export function withTraceIds(log: Logger): Logger {
  const correlate = (fields: Record<string, unknown>): Record<string, unknown> => {
    const ids = activeTraceIds();
    return ids ? { trace_id: ids.traceId, span_id: ids.spanId, ...fields } : fields;
  };
  return {
    debug: (fields, message) => log.debug(correlate(fields), message),
    info: (fields, message) => log.info(correlate(fields), message),
    warn: (fields, message) => log.warn(correlate(fields), message),
    error: (fields, message) => log.error(correlate(fields), message),
  };
}
