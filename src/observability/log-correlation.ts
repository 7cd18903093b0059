/**
 * Log lines that say which trace they belong to: while an OpenTelemetry span
 * is active, each entry gets `trace_id` and `span_id` (the names of
 * OpenTelemetry's log data model, which pino's instrumentation uses too).
 * Costs a property read per line until the app registers an SDK.
 */
import type { Logger } from "../log.js";
import { openTelemetry } from "./opentelemetry.js";

/** `log` with the active span's ids added to every entry's fields (fields the caller set win). */
export function withTraceIds(log: Logger): Logger {
  const correlate = (fields: Record<string, unknown>): Record<string, unknown> => {
    const api = openTelemetry();
    const span = api?.trace.getActiveSpan();
    if (!api || !span) return fields;
    const { traceId, spanId } = span.spanContext();
    if (!api.trace.isSpanContextValid(span.spanContext())) return fields;
    return { trace_id: traceId, span_id: spanId, ...fields };
  };
  return {
    debug: (fields, message) => log.debug(correlate(fields), message),
    info: (fields, message) => log.info(correlate(fields), message),
    warn: (fields, message) => log.warn(correlate(fields), message),
    error: (fields, message) => log.error(correlate(fields), message),
  };
}
