/**
 * OpenTelemetry for the service, on when OTEL_EXPORTER_OTLP_ENDPOINT is set
 * (e.g. http://localhost:4318 for a local collector or Jaeger): traces and
 * metrics go there over OTLP/HTTP (JSON). pool.ts imports this first, so the
 * parent and every runner (which imports pool.ts) register the same SDK, and
 * a request's trace runs from the parent's call span into the runner's.
 *
 * flame-ts only uses OpenTelemetry's API; the SDK and exporters are the app's
 * choice, loaded here only when telemetry is on. OTEL_SERVICE_NAME names the
 * service (default "image-service").
 */
import { context, metrics, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { MeterProvider, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";

/** What telemetry set up, to flush and shut down when the process stops. */
export interface Telemetry {
  shutdown(): Promise<void>;
}

/** Registers the SDK with OTLP exporters to `endpoint` (the exporters append /v1/traces and /v1/metrics). */
export function startTelemetry(endpoint: string, serviceName = process.env.OTEL_SERVICE_NAME || "image-service"): Telemetry {
  const base = endpoint.replace(/\/+$/, "");
  const resource = resourceFromAttributes({ "service.name": serviceName });
  const tracerProvider = new BasicTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${base}/v1/traces` }), { scheduledDelayMillis: 1_000 })],
  });
  // The context manager is what makes a span active across awaits (and flame-ts's calls children of the request's span).
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(tracerProvider);
  const meterProvider = new MeterProvider({
    resource,
    readers: [new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter({ url: `${base}/v1/metrics` }), exportIntervalMillis: 10_000 })],
  });
  metrics.setGlobalMeterProvider(meterProvider);
  return {
    async shutdown() {
      await Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]);
    },
  };
}
