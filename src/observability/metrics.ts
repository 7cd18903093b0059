/**
 * A pool's metrics through the OpenTelemetry metrics API (docs/observability.md
 * lists them): call and queue durations, boot durations and failures, and
 * gauges of runners by state, calls in flight and callers queued.
 *
 * Recorded only once the app registered a MeterProvider (opentelemetry.ts);
 * until then a call pays one property read. The API has no proxy for meter
 * providers (a meter taken before the app registers one stays a no-op), so
 * the instruments are made again whenever the registered provider changes.
 */
import type { BatchObservableCallback, Counter, Histogram, Meter, MeterProvider, ObservableGauge, ObservableUpDownCounter } from "@opentelemetry/api";
import { RPC_SYSTEM } from "./call-trace.js";
import { errorType } from "./error-type.js";
import { INSTRUMENTATION_SCOPE, openTelemetry } from "./opentelemetry.js";

/** What the gauges read from the pool when the SDK collects. */
export interface PoolGauges {
  runnersByState(): Record<"booting" | "idle" | "busy" | "draining" | "stopping", number>;
  inFlight(): number;
  /** Worker threads on the pool's connected runners (pool option `runnerThreads`). */
  threads(): number;
  queued(): number;
}

interface Instruments {
  meter: Meter;
  callDuration: Histogram;
  queueDuration: Histogram;
  bootDuration: Histogram;
  bootFailures: Counter;
  runners: ObservableGauge;
  inFlight: ObservableUpDownCounter;
  queued: ObservableUpDownCounter;
  threads: ObservableUpDownCounter;
  observe: BatchObservableCallback;
}

/** Bucket bounds in seconds: calls and boots span sub-millisecond to minutes. */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class PoolMetrics {
  private provider: MeterProvider | undefined;
  private instruments: Instruments | undefined;

  constructor(
    private readonly pool: string,
    private readonly backend: string,
    private readonly gauges: PoolGauges,
  ) {}

  /** Starts measuring one call, or returns undefined when no MeterProvider is registered. */
  startCall(functionId: string): CallMeter | undefined {
    const instruments = this.current();
    return instruments ? new CallMeter(instruments, { "rpc.system.name": RPC_SYSTEM, "rpc.method": functionId, "flame.pool": this.pool }) : undefined;
  }

  /** A boot ended after `milliseconds`, connected or with `error`. */
  bootEnded(milliseconds: number, error?: Error): void {
    const instruments = this.current();
    if (!instruments) return;
    const attributes: Record<string, string> = { "flame.pool": this.pool, "flame.backend": this.backend };
    if (error) attributes["error.type"] = errorType(error);
    instruments.bootDuration.record(milliseconds / 1000, attributes);
    if (error) instruments.bootFailures.add(1, attributes);
  }

  /** Makes the gauges known to a provider registered before the pool's first call. */
  attach(): void {
    this.current();
  }

  /** Stops reporting the gauges (the pool stopped). */
  detach(): void {
    const instruments = this.instruments;
    if (instruments) instruments.meter.removeBatchObservableCallback(instruments.observe, [instruments.runners, instruments.inFlight, instruments.queued, instruments.threads]);
    this.instruments = undefined;
    this.provider = undefined;
  }

  private current(): Instruments | undefined {
    const api = openTelemetry();
    if (!api) return undefined;
    const provider = api.metrics.getMeterProvider();
    if (provider !== this.provider) {
      this.detach();
      this.provider = provider;
      this.instruments = this.create(provider.getMeter(INSTRUMENTATION_SCOPE));
    }
    return this.instruments;
  }

  private create(meter: Meter): Instruments {
    const advice = { advice: { explicitBucketBoundaries: DURATION_BUCKETS } };
    const runners = meter.createObservableGauge("flame.runners", { description: "Runners of the pool by state", unit: "{runner}" });
    const inFlight = meter.createObservableUpDownCounter("flame.calls.in_flight", { description: "Calls running on runners", unit: "{call}" });
    const queued = meter.createObservableUpDownCounter("flame.calls.queued", { description: "Callers waiting for a runner", unit: "{call}" });
    const threads = meter.createObservableUpDownCounter("flame.runner.threads", { description: "Worker threads running calls on the pool's runners", unit: "{thread}" });
    const pool = { "flame.pool": this.pool };
    const observe: BatchObservableCallback = (result) => {
      for (const [state, count] of Object.entries(this.gauges.runnersByState())) result.observe(runners, count, { ...pool, "flame.runner.state": state });
      result.observe(inFlight, this.gauges.inFlight(), pool);
      result.observe(queued, this.gauges.queued(), pool);
      result.observe(threads, this.gauges.threads(), pool);
    };
    meter.addBatchObservableCallback(observe, [runners, inFlight, queued, threads]);
    return {
      meter,
      callDuration: meter.createHistogram("rpc.client.call.duration", { description: "Duration of calls, as their callers saw them", unit: "s", ...advice }),
      queueDuration: meter.createHistogram("flame.call.queue.duration", { description: "Time calls waited for a runner", unit: "s", ...advice }),
      bootDuration: meter.createHistogram("flame.runner.boot.duration", { description: "Duration of runner boots, until connected or failed", unit: "s", ...advice }),
      bootFailures: meter.createCounter("flame.runner.boot.failures", { description: "Runner boots that failed", unit: "{boot}" }),
      runners,
      inFlight,
      queued,
      threads,
      observe,
    };
  }
}

/** The measurements of one call: its duration, and how long it waited for a runner (times from the PendingCall's clock). */
export class CallMeter {
  constructor(
    private readonly instruments: Instruments,
    private readonly attributes: Record<string, string>,
  ) {}

  /** The call is on a runner after waiting `waited` ms (0 when it did not queue). */
  placed(waited: number): void {
    this.instruments.queueDuration.record(waited / 1000, this.attributes);
  }

  /** The call settled `duration` ms after it was made. */
  finished(duration: number, error?: Error): void {
    this.instruments.callDuration.record(duration / 1000, error ? { ...this.attributes, "error.type": errorType(error) } : this.attributes);
  }
}
