import { describe, expect, it } from "vitest";
import { currentCall } from "../../src/index.js";
import { poolsStoppedAfterEach } from "../support/pools.js";

const makePool = poolsStoppedAfterEach();

describe("a defined function gets exactly the caller's arguments; its call's context comes from currentCall()", () => {
  it("a default parameter keeps its default when the caller leaves it out", async () => {
    const { describeCall } = makePool({ name: "ctx-args", max: 1 });
    await expect(describeCall(2)).resolves.toMatchObject({ size: 2, scale: 1 });
    await expect(describeCall(2, 3)).resolves.toMatchObject({ size: 2, scale: 3 });
  });

  it("currentCall() names the runner, the pool and the function, and the deadline follows the call's timeout", async () => {
    const { pool, describeCall, whoami } = makePool({ name: "ctx-fields", max: 1, timeout: 60_000 });
    const { runnerId } = await whoami();
    const sentAt = Date.now();
    const seen = await pool.call(describeCall, [1], { timeout: 5_000 });
    expect(seen).toMatchObject({ runnerId, pool: "ctx-fields", functionId: "describeCall" });
    // Same machine, same clock: the deadline is about five seconds after the call was made.
    expect(seen.deadline).toBeGreaterThanOrEqual(sentAt + 5_000 - 50);
    expect(seen.deadline).toBeLessThanOrEqual(seen.now + 5_000);
    const untimed = await pool.call(describeCall, [1], { timeout: Infinity });
    expect(untimed.deadline).toBe(Infinity);
  });

  it("is undefined outside a call", () => {
    expect(currentCall()).toBeUndefined();
  });
});
