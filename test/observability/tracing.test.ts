/**
 * OpenTelemetry tracing end to end, with the real SDK in the parent (this
 * process) and in the runners (real child processes that load
 * test/fixtures/traced-app.ts, which registers the same SDK there and hands
 * its finished spans back through a function).
 */
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ProcessBackend, type ProvisionedRunner } from "../../src/index.js";
import { finishedSpans, forgetSpans, makeTracedPool, registerTracing, type SpanRecord } from "../fixtures/traced-app.js";
import { MIRROR_EXEC_ARGV, testProcessBackend } from "../support/backends.js";

/** Terminates as a provider's graceful stop does: the runner first gets a moment to exit on its own. */
class PatientProcessBackend extends ProcessBackend {
  override async terminate(runner: ProvisionedRunner): Promise<void> {
    await Promise.race([runner.exited, sleep(5_000, undefined, { ref: false })]);
    return super.terminate(runner);
  }
}

const pools: { stop(): Promise<void> }[] = [];

function tracedPool(name: string, backendEnv: Record<string, string> = {}) {
  const made = makeTracedPool({ name, backend: testProcessBackend({ env: backendEnv }), min: 0, max: 1 });
  pools.push(made.pool);
  return made;
}

beforeAll(async () => {
  await registerTracing();
});

afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
  forgetSpans();
});

/** The parent's spans for `functionId` (flame-ts' tracer only). */
function flameSpans(name: string, spans = finishedSpans()): SpanRecord[] {
  return spans.filter((span) => span.scope === "flame-ts" && span.name === name);
}

function only<T>(items: T[], what: string): T {
  expect(items, what).toHaveLength(1);
  return items[0]!;
}

describe("a traced call", () => {
  it("has a CLIENT span on the parent and a SERVER span on the runner, parent and child in one trace", async () => {
    const { work, runnerSpans, runnerLoadedOpenTelemetry, pool } = tracedPool("traced");
    await expect(work(21)).resolves.toBe(42);

    const client = only(flameSpans("work"), "client spans");
    expect(client.kind).toBe(SpanKind.CLIENT);
    expect(client.attributes).toMatchObject({ "rpc.system.name": "flame-ts", "rpc.method": "work", "flame.pool": pool.name });
    expect(client.attributes["flame.runner.id"]).toMatch(new RegExp(`^${pool.name}-`));
    expect(client.status.code).toBe(SpanStatusCode.UNSET);

    const onRunner = await runnerSpans();
    const server = only(flameSpans("work", onRunner), "server spans");
    expect(server.kind).toBe(SpanKind.SERVER);
    expect(server.traceId).toBe(client.traceId);
    expect(server.parentSpanId).toBe(client.spanId);
    expect(server.attributes).toMatchObject({
      "rpc.system.name": "flame-ts",
      "rpc.method": "work",
      "flame.pool": pool.name,
      "flame.runner.id": client.attributes["flame.runner.id"],
    });

    // The function's own span nests under the server span.
    const user = only(onRunner.filter((span) => span.name === "user-work"), "user spans");
    expect(user.scope).toBe("app");
    expect(user.traceId).toBe(client.traceId);
    expect(user.parentSpanId).toBe(server.spanId);
    // (What the last test reads on a runner without an SDK, shown to see a loaded API.)
    await expect(runnerLoadedOpenTelemetry()).resolves.toBe(true);
  });

  it("is a child of the caller's active span", async () => {
    const { echo } = tracedPool("traced-nested");
    const rootId = await trace.getTracer("test").startActiveSpan("request", async (root) => {
      await echo(1);
      root.end();
      return root.spanContext().spanId;
    });
    const client = only(flameSpans("echo"), "client spans");
    expect(client.parentSpanId).toBe(rootId);
  });

  it("that waited for a boot shows its time queued, linked to the boot's own trace", async () => {
    const { echo } = tracedPool("traced-boot");
    await echo("first"); // min 0: this call queued while its runner booted
    await echo("second"); // a warm runner: no queue, no link
    const spans = finishedSpans();
    const [first, second] = flameSpans("echo", spans).sort((a, b) => a.startTime - b.startTime);
    const queue = only(flameSpans("flame.queue", spans), "queue spans");
    const boot = only(flameSpans("flame.boot", spans), "boot spans");
    expect(queue.parentSpanId).toBe(first!.spanId);
    expect(queue.links).toEqual([{ traceId: boot.traceId, spanId: boot.spanId, attributes: { "flame.runner.id": first!.attributes["flame.runner.id"] } }]);
    expect(boot.endTime).toBeLessThanOrEqual(queue.endTime + 1);
    expect(second).toBeDefined();
  });

  it("boots its runner under a flame.boot span of its own trace, and the runner's load of the entry module is its child", async () => {
    const { echo, runnerSpans, pool } = tracedPool("traced-boot-trace");
    await echo("x");
    const client = only(flameSpans("echo"), "client spans");
    const boot = only(flameSpans("flame.boot"), "boot spans");
    expect(boot.parentSpanId, "a root span").toBeUndefined();
    expect(boot.traceId).not.toBe(client.traceId);
    expect(boot.attributes).toMatchObject({
      "flame.pool": pool.name,
      "flame.backend": "process",
      "flame.runner.id": client.attributes["flame.runner.id"],
      "flame.boot.outcome": "ok",
    });
    expect(boot.attributes["flame.boot.duration"]).toBeGreaterThan(0);
    expect(boot.status.code).toBe(SpanStatusCode.UNSET);

    const load = only(flameSpans("flame.runner.load_entry", await runnerSpans()), "load spans");
    expect(load.traceId).toBe(boot.traceId);
    expect(load.parentSpanId).toBe(boot.spanId);
    expect(load.attributes).toMatchObject({ "flame.pool": pool.name, "flame.runner.id": client.attributes["flame.runner.id"] });
    // Recorded after the import with the times measured around it: within the boot (both clocks are this machine's).
    expect(load.endTime).toBeGreaterThan(load.startTime);
    expect(load.startTime).toBeGreaterThanOrEqual(boot.startTime - 5);
    expect(load.endTime).toBeLessThanOrEqual(boot.endTime + 5);
  });

  it("boots whose runner has no SDK still have their span on the parent", async () => {
    const { echo, runnerSpans } = tracedPool("traced-boot-no-runner-sdk", { FLAME_TEST_RUNNER_SDK: "off" });
    await echo("x");
    expect(only(flameSpans("flame.boot"), "boot spans").attributes["flame.boot.outcome"]).toBe("ok");
    await expect(runnerSpans()).resolves.toEqual([]);
  });

  it("that fails sets status ERROR and error.type on both sides", async () => {
    const { fail, runnerSpans } = tracedPool("traced-fail");
    await expect(fail("no good")).rejects.toMatchObject({ code: "FLAME_REMOTE_ERROR", remoteName: "TypeError" });
    const client = only(flameSpans("fail"), "client spans");
    expect(client.status).toMatchObject({ code: SpanStatusCode.ERROR, message: "no good" });
    expect(client.attributes["error.type"]).toBe("TypeError");
    const server = only(flameSpans("fail", await runnerSpans()), "server spans");
    expect(server.status).toMatchObject({ code: SpanStatusCode.ERROR, message: "no good" });
    expect(server.attributes["error.type"]).toBe("TypeError");
  });

  it("that fails on the parent's side gives flame-ts' error code as error.type", async () => {
    const { sleep, pool } = tracedPool("traced-timeout");
    await expect(pool.call(sleep, [60_000], { timeout: 50 })).rejects.toMatchObject({ code: "FLAME_CALL_TIMEOUT" });
    const client = only(flameSpans("sleep"), "client spans");
    expect(client.status.code).toBe(SpanStatusCode.ERROR);
    expect(client.attributes["error.type"]).toBe("FLAME_CALL_TIMEOUT");
  });

  it("refused before it is made (an aborted signal) leaves no span", async () => {
    const { echo, pool } = tracedPool("traced-refused");
    await expect(pool.call(echo, [1], { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: "FLAME_CALL_ABORTED" });
    expect(flameSpans("echo")).toEqual([]);
  });

  it("on a runner without an SDK runs untraced, and the runner never loads the OpenTelemetry API", async () => {
    const { echo, runnerSpans, runnerLoadedOpenTelemetry } = tracedPool("traced-no-runner-sdk", { FLAME_TEST_RUNNER_SDK: "off" });
    await expect(echo("x")).resolves.toBe("x");
    expect(only(flameSpans("echo"), "client spans").kind).toBe(SpanKind.CLIENT);
    await expect(runnerLoadedOpenTelemetry()).resolves.toBe(false);
    await expect(runnerSpans()).resolves.toEqual([]);
  });

  it("on a runner told to shut down, the spans its SDK still holds are exported before it exits", async () => {
    const spansFile = join(tmpdir(), `flame-ts-spans-${process.pid}-${Date.now()}.jsonl`);
    try {
      const backend = new PatientProcessBackend({ execArgv: MIRROR_EXEC_ARGV, killTimeout: 500, env: { FLAME_TEST_SPANS_FILE: spansFile } });
      const { pool, echo } = makeTracedPool({ name: "traced-flush", backend, min: 0, max: 1 });
      pools.push(pool);
      await echo("x");
      expect(existsSync(spansFile), "the batch holds the runner's span for a minute").toBe(false);
      await pool.stop();
      const records = readFileSync(spansFile, "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line) as SpanRecord);
      const server = only(flameSpans("echo", records), "server spans flushed at exit");
      expect(server.kind).toBe(SpanKind.SERVER);
      expect(server.parentSpanId).toBe(only(flameSpans("echo"), "client spans").spanId);
    } finally {
      rmSync(spansFile, { force: true });
    }
  });

  it("on a runner stopped by ProcessBackend (SIGTERM right after the shutdown request), the spans are exported before it ends", async () => {
    const spansFile = join(tmpdir(), `flame-ts-spans-sigterm-${process.pid}-${Date.now()}.jsonl`);
    try {
      // Default killTimeout (2 s); an export that takes 300 ms, as a network exporter's may: SIGTERM's default action would cut it.
      const backend = new ProcessBackend({ execArgv: MIRROR_EXEC_ARGV, env: { FLAME_TEST_SPANS_FILE: spansFile, FLAME_TEST_EXPORT_DELAY: "300" } });
      const { pool, echo } = makeTracedPool({ name: "traced-sigterm", backend, min: 0, max: 1 });
      pools.push(pool);
      await echo("x");
      expect(existsSync(spansFile), "the batch holds the runner's spans for a minute").toBe(false);
      await pool.stop();
      const records = readFileSync(spansFile, "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line) as SpanRecord);
      const server = only(flameSpans("echo", records), "server spans flushed on SIGTERM");
      expect(server.parentSpanId).toBe(only(flameSpans("echo"), "client spans").spanId);
      expect(flameSpans("flame.runner.load_entry", records)).toHaveLength(1);
    } finally {
      rmSync(spansFile, { force: true });
    }
  });
});
