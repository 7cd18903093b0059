import { afterAll, describe, expect, it } from "vitest";
import { BootError } from "../../src/index.js";
import { resolveEntry } from "../../src/pool/entry.js";
import { pool, where, whereNested } from "../fixtures/discovered-app.js";
import { pool as unguardedPool, ping } from "../fixtures/unguarded-call-app.js";

afterAll(() => Promise.all([pool.stop(), unguardedPool.stop()]));

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

  it("a call made by the module's top-level code while a runner loads it fails the boot at once, naming the fix", async () => {
    const startedAt = Date.now();
    const error = await ping().catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(BootError);
    expect((error as Error).message).toMatch(/UnguardedCallError.*wrap it in if \(!isRunner\(\)\)/s);
    expect(Date.now() - startedAt).toBeLessThan(10_000);
  });
});

describe("resolveEntry", () => {
  const constructedIn = "/srv/app/src/pools.js";
  it("defaults to the module that constructed the pool, else the main script", () => {
    expect(resolveEntry(undefined, constructedIn)).toBe(constructedIn);
    expect(resolveEntry(undefined, undefined)).toBe(process.argv[1]);
  });

  it("resolves a relative entry against that module, not the working directory", () => {
    expect(resolveEntry("./worker.js", constructedIn)).toBe("/srv/app/src/worker.js");
    expect(resolveEntry("../dist/pool.js", constructedIn)).toBe("/srv/app/dist/pool.js");
    expect(resolveEntry("/abs/entry.js", constructedIn)).toBe("/abs/entry.js");
    expect(resolveEntry("file:///abs/entry%20x.js", constructedIn)).toBe("/abs/entry x.js");
  });
});
