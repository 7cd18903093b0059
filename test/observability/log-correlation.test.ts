/**
 * The pool's log entries carry the active span's trace_id and span_id. A cast
 * refused at once (an aborted signal) logs its failure from the caller's
 * context, so no runner is needed.
 */
import { trace } from "@opentelemetry/api";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { Pool, type Logger } from "../../src/index.js";
import { registerTracing } from "../fixtures/traced-app.js";

const pools: Pool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
});

beforeAll(async () => {
  await registerTracing();
});

function recordingPool(name: string) {
  const entries: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  const entry = (level: string) => (fields: Record<string, unknown>, message: string) => void entries.push({ level, fields, message });
  const log: Logger = { debug: entry("debug"), info: entry("info"), warn: entry("warn"), error: entry("error") };
  const pool = new Pool({ name, log, min: 0, max: 1 });
  pools.push(pool);
  return { pool, entries, noop: pool.define("noop", () => undefined) };
}

describe("log correlation", () => {
  it("adds the active span's ids to the pool's log entries", async () => {
    const { pool, entries, noop } = recordingPool("correlated");
    const ids = await trace.getTracer("test").startActiveSpan("request", async (span) => {
      pool.cast(noop, [], { signal: AbortSignal.abort() });
      await new Promise((resolve) => setImmediate(resolve));
      span.end();
      return span.spanContext();
    });
    const warning = entries.find((entry) => entry.level === "warn")!;
    expect(warning.message).toMatch(/cast of "noop" failed/);
    expect(warning.fields).toMatchObject({ pool: "correlated", trace_id: ids.traceId, span_id: ids.spanId });
  });

  it("adds nothing outside a span", async () => {
    const { pool, entries, noop } = recordingPool("uncorrelated");
    pool.cast(noop, [], { signal: AbortSignal.abort() });
    await new Promise((resolve) => setImmediate(resolve));
    const warning = entries.find((entry) => entry.level === "warn")!;
    expect(warning.fields).not.toHaveProperty("trace_id");
    expect(warning.fields).not.toHaveProperty("span_id");
  });
});
