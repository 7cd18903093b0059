/**
 * With no OpenTelemetry SDK registered in the parent, flame-ts traces nothing
 * and sends no trace context, even to runners that have an SDK of their own
 * (test/fixtures/traced-app.ts registers one on each runner): those runners
 * record no span for the calls, and the calls work as ever.
 */
import { afterEach, describe, expect, it } from "vitest";
import { makeTracedPool } from "../fixtures/traced-app.js";
import { testProcessBackend } from "../support/backends.js";

const pools: { stop(): Promise<void> }[] = [];

afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
});

describe("with no SDK registered in the parent", () => {
  it("calls succeed and fail as ever, and nothing is traced on either side", async () => {
    const made = makeTracedPool({ name: "untraced", backend: testProcessBackend(), min: 0, max: 1 });
    pools.push(made.pool);
    const { echo, fail, runnerSpans, runnerLoadedOpenTelemetry } = made;
    expect((globalThis as Record<symbol, unknown>)[Symbol.for("opentelemetry.js.api.1")], "nothing registered here").toBeUndefined();

    await expect(echo({ a: 1 })).resolves.toEqual({ a: 1 });
    await expect(fail("nope")).rejects.toMatchObject({ code: "FLAME_REMOTE_ERROR", remoteName: "TypeError" });
    await expect(made.pool.call(echo, [2], { timeout: 1_000 })).resolves.toBe(2);

    // The runner has an SDK (and so the API): it would have recorded a server span for any call that carried a trace context.
    await expect(runnerLoadedOpenTelemetry()).resolves.toBe(true);
    await expect(runnerSpans()).resolves.toEqual([]);
  });
});
