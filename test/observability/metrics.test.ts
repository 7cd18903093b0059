/**
 * A pool's metrics through the real OpenTelemetry metrics SDK, registered in
 * this process (the parent), read with a reader the test collects on demand.
 */
import { metrics } from "@opentelemetry/api";
import { DataPointType, MeterProvider, MetricReader, type MetricData } from "@opentelemetry/sdk-metrics";
import { beforeAll, describe, expect, it } from "vitest";
import { RemoteError } from "../../src/index.js";
import { poolsStoppedAfterEach } from "../support/pools.js";

class OnDemandReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const reader = new OnDemandReader();
const makePool = poolsStoppedAfterEach();
const brokenEntry = new URL("../fixtures/broken-app.ts", import.meta.url).pathname;

beforeAll(() => {
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
});

async function collected(): Promise<Map<string, MetricData>> {
  const { resourceMetrics } = await reader.collect();
  const byName = new Map<string, MetricData>();
  for (const scope of resourceMetrics.scopeMetrics) {
    if (scope.scope.name !== "flame-ts") continue;
    for (const metric of scope.metrics) byName.set(metric.descriptor.name, metric);
  }
  return byName;
}

/** The data points of `name` for pool `pool`, as [attributes, value]. */
function points(all: Map<string, MetricData>, name: string, pool: string): { attributes: Record<string, unknown>; value: unknown }[] {
  const metric = all.get(name);
  if (!metric) return [];
  return (metric.dataPoints as { attributes: Record<string, unknown>; value: unknown }[])
    .filter((point) => point.attributes["flame.pool"] === pool)
    .map(({ attributes, value }) => ({ attributes, value }));
}

describe("pool metrics", () => {
  it("records call and queue durations by function and outcome, the boot, and gauges the pool", async () => {
    const { pool, add, fail } = makePool({ name: "metered", min: 0, max: 1 });
    await expect(add(1, 2)).resolves.toBe(3);
    await expect(fail("no")).rejects.toBeInstanceOf(RemoteError);

    const all = await collected();
    const calls = points(all, "rpc.client.call.duration", "metered");
    expect(all.get("rpc.client.call.duration")!.descriptor.unit).toBe("s");
    expect(all.get("rpc.client.call.duration")!.dataPointType).toBe(DataPointType.HISTOGRAM);
    const ofAdd = calls.find((point) => point.attributes["rpc.method"] === "add")!;
    expect(ofAdd.attributes).toEqual({ "rpc.system.name": "flame-ts", "rpc.method": "add", "flame.pool": "metered" });
    expect(ofAdd.value).toMatchObject({ count: 1 });
    const ofFail = calls.find((point) => point.attributes["rpc.method"] === "fail")!;
    expect(ofFail.attributes).toMatchObject({ "error.type": "TypeError" });
    expect(ofFail.value).toMatchObject({ count: 1 });

    // The first call waited for the boot; the second found a ready runner (a wait of zero).
    const waits = points(all, "flame.call.queue.duration", "metered");
    expect(waits.find((point) => point.attributes["rpc.method"] === "add")!.value).toMatchObject({ count: 1, min: expect.any(Number) });
    expect((waits.find((point) => point.attributes["rpc.method"] === "add")!.value as { min: number }).min).toBeGreaterThan(0);
    expect(waits.find((point) => point.attributes["rpc.method"] === "fail")!.value).toMatchObject({ count: 1, max: 0 });

    const boots = points(all, "flame.runner.boot.duration", "metered");
    expect(boots).toEqual([{ attributes: { "flame.pool": "metered", "flame.backend": "process" }, value: expect.objectContaining({ count: 1 }) }]);
    expect(points(all, "flame.runner.boot.failures", "metered")).toEqual([]);

    const runners = Object.fromEntries(points(all, "flame.runners", "metered").map((point) => [point.attributes["flame.runner.state"], point.value]));
    expect(runners).toEqual({ booting: 0, idle: 1, busy: 0, draining: 0, stopping: 0 });
    expect(points(all, "flame.calls.in_flight", "metered").map((point) => point.value)).toEqual([0]);
    expect(points(all, "flame.calls.queued", "metered").map((point) => point.value)).toEqual([0]);

    // A stopped pool is no longer observed: the SDK repeats the last observation it had (idle 1);
    // a callback still registered would report the stopped pool's zero runners.
    await pool.stop();
    const afterStop = Object.fromEntries(points(await collected(), "flame.runners", "metered").map((point) => [point.attributes["flame.runner.state"], point.value]));
    expect(afterStop.idle).toBe(1);
  });

  it("counts a failed boot, with its error.type", async () => {
    const { echo } = makePool({ name: "metered-broken", entry: brokenEntry, min: 0, max: 1, bootTimeout: 10_000 });
    await expect(echo(1)).rejects.toMatchObject({ code: "FLAME_BOOT_FAILED" });
    const all = await collected();
    const failures = points(all, "flame.runner.boot.failures", "metered-broken");
    expect(failures).toHaveLength(1);
    expect(failures[0]!.attributes).toEqual({ "flame.pool": "metered-broken", "flame.backend": "process", "error.type": "FLAME_BOOT_FAILED" });
    expect(failures[0]!.value).toBeGreaterThanOrEqual(1);
    expect(points(all, "flame.runner.boot.duration", "metered-broken")[0]!.attributes).toMatchObject({ "error.type": "FLAME_BOOT_FAILED" });
    const calls = points(all, "rpc.client.call.duration", "metered-broken");
    expect(calls[0]!.attributes).toMatchObject({ "rpc.method": "echo", "error.type": "FLAME_BOOT_FAILED" });
  });
});
