import { describe, expect, it } from "vitest";
import { RemoteError, SerializationError } from "../../src/index.js";
import { nest } from "../fixtures/app.js";
import { poolsStoppedAfterEach } from "../support/pools.js";

const makePool = poolsStoppedAfterEach();

describe("values that serialize but do not decode, and errors that fight back, fail only their own call", () => {
  it("arguments nested too deep to decode fail the call with SerializationError at once; the runner serves on", async () => {
    const { depthOf, whoami } = makePool({ name: "deep-args", max: 1, timeout: 20_000 });
    const { pid } = await whoami();
    const startedAt = Date.now();
    await expect(depthOf(nest(3_000))).rejects.toBeInstanceOf(SerializationError);
    // Not the call's 20 s timeout: the runner answered.
    expect(Date.now() - startedAt).toBeLessThan(5_000);
    await expect(depthOf(nest(100))).resolves.toBe(100);
    expect((await whoami()).pid).toBe(pid);
  });

  it("a result nested too deep to decode fails only its call; other calls on the runner are unaffected", async () => {
    const { nested, sleep, whoami } = makePool({ name: "deep-result", max: 1 });
    const { pid } = await whoami();
    const concurrent = sleep(300);
    await expect(nested(3_000)).rejects.toMatchObject({ name: "SerializationError", code: "FLAME_SERIALIZATION" });
    await expect(concurrent).resolves.toMatchObject({ pid });
    expect((await whoami()).pid).toBe(pid);
  });

  it("a thrown error whose getters throw, or a revoked proxy, reaches the caller as a RemoteError; the runner survives", async () => {
    const { throwHostile, whoami } = makePool({ name: "hostile-errors", max: 1 });
    const { pid } = await whoami();
    const getters = await throwHostile("getters").catch((error: unknown) => error);
    expect(getters).toBeInstanceOf(RemoteError);
    expect((getters as RemoteError).message).toMatch(/unreadable/);
    const proxy = await throwHostile("revoked-proxy").catch((error: unknown) => error);
    expect(proxy).toBeInstanceOf(RemoteError);
    expect((proxy as RemoteError).message).toMatch(/unprintable/);
    expect((await whoami()).pid).toBe(pid);
  });

  it("a remote property named __proto__ (as a hostile runner can send) does not become the caller's error's prototype", () => {
    // JSON.parse makes "__proto__" an own property, as V8's deserializer does for a peer that sends one.
    const properties = JSON.parse('{"__proto__": {"polluted": true}, "statusCode": 500}') as Record<string, unknown>;
    const error = new RemoteError({ name: "Error", message: "boom", properties });
    expect(Object.getPrototypeOf(error)).toBe(RemoteError.prototype);
    expect((error as { polluted?: unknown }).polluted).toBeUndefined();
    expect((error as { statusCode?: unknown }).statusCode).toBe(500);
  });

  it("an error property named __proto__ on the runner does not travel as the error's prototype", async () => {
    const { throwHostile } = makePool({ name: "hostile-proto", max: 1 });
    const error = await throwHostile("proto-property").catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(RemoteError);
    expect((error as { polluted?: unknown }).polluted).toBeUndefined();
  });
});
