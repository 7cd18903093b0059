import { afterAll, describe, expect, it } from "vitest";
import { pool, where, whereNested } from "../fixtures/discovered-app.js";

afterAll(() => pool.stop());

describe("a pool's runners import the module that constructed it, with no entry option", () => {
  it("runs a call on a runner although the process's main script is the test runner's worker", async () => {
    const result = await where();
    expect(result.pid).not.toBe(process.pid);
    expect(result.runnerId).toMatch(/^discovered-/);
  });

  it("a runner's nested call boots a runner of its own from the same module", async () => {
    const { outer, inner } = await whereNested();
    expect(outer).not.toBe(process.pid);
    expect(inner).not.toBe(outer);
    expect(inner).not.toBe(process.pid);
  });
});
