/**
 * The error taxonomy without processes: every code declared once and listed
 * in the README, `instanceof` across two copies of the module (as two bundles
 * or two installs of flame-ts load it), subclass checks that stay precise, and
 * QueueTimeoutError's message and cause.
 */
import { readFileSync } from "node:fs";
import { describe, expect, expectTypeOf, it } from "vitest";
import { FlyApiError } from "../src/backends/fly/api-error.js";
import * as errors from "../src/errors.js";
import {
  BackendError,
  BootError,
  BootTimeoutError,
  ERROR_CODES,
  FlameError,
  QueueTimeoutError,
  RemoteError,
  type FlameErrorCode,
} from "../src/errors.js";

type ErrorsModule = typeof errors;

/** A second, separate evaluation of src/errors.ts (the query makes it another module to vite): another copy's classes. */
const copy = (await import(new URL("../src/errors.ts?copy", import.meta.url).href)) as ErrorsModule;

/** One instance of each class a module exports, made with that module's constructors. */
function samples(module: ErrorsModule): Record<string, Error> {
  const cause = new Error("root cause");
  return {
    FlameError: new module.FlameError(module.ERROR_CODES.FLAME_BACKEND, "generic"),
    InvalidOptionError: new module.InvalidOptionError('option "max" must be a positive integer, got -1'),
    CallTimeoutError: new module.CallTimeoutError("fn", 1_000, "running"),
    CallAbortedError: new module.CallAbortedError("fn", "user left"),
    BootError: new module.BootError("could not boot", { cause }),
    BootTimeoutError: new module.BootTimeoutError("did not say hello", { cause }),
    QueueTimeoutError: new module.QueueTimeoutError({ poolName: "p", functionId: "fn", waited: 30_000, lastBootFailure: cause }),
    RunnerExitedError: new module.RunnerExitedError("p-1", "killed"),
    QueueFullError: new module.QueueFullError("p", 10),
    PoolStoppedError: new module.PoolStoppedError("p"),
    SerializationError: new module.SerializationError("a function cannot be sent"),
    UnknownFunctionError: new module.UnknownFunctionError("p", "fn"),
    VersionMismatchError: new module.VersionMismatchError("protocol 1 vs 2"),
    UnguardedCallError: new module.UnguardedCallError("fn"),
    BackendError: new module.BackendError("provider failed", { retryable: true, code: module.ERROR_CODES.FLAME_EC2_CAPACITY, cause }),
    RemoteError: new module.RemoteError({ name: "TypeError", message: "boom", properties: { code: "E_APP" } }),
  };
}

/** The exported error classes of a module, by name. */
function classes(module: ErrorsModule): Record<string, Function> {
  const exported: [string, unknown][] = Object.entries(module);
  return Object.fromEntries(exported.filter((entry): entry is [string, Function] => typeof entry[1] === "function" && entry[1].prototype instanceof Error));
}

describe("error codes", () => {
  const codes = Object.values(ERROR_CODES);

  it("are declared once: each key is its code, every value distinct and FLAME_-prefixed", () => {
    for (const [key, code] of Object.entries(ERROR_CODES)) expect(code).toBe(key);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(code).toMatch(/^FLAME_[A-Z0-9]+(_[A-Z0-9]+)*$/);
  });

  it("type every FlameError's code, and every class raises one of them", () => {
    expectTypeOf<FlameError["code"]>().toEqualTypeOf<FlameErrorCode>();
    expectTypeOf<(typeof ERROR_CODES)["FLAME_FLY_THROTTLED"]>().toEqualTypeOf<"FLAME_FLY_THROTTLED">();
    // @ts-expect-error a code outside the taxonomy does not compile
    new FlameError("FLAME_FLY_PACED", "gone");
    const raised = [...Object.values(samples(errors)), new FlyApiError("fly failed", { retryable: true })].map((error) => (error as FlameError).code);
    for (const code of raised) expect(codes).toContain(code);
  });

  it("the provider codes share one vocabulary", () => {
    const suffixes = new Set(["UNAUTHORIZED", "INVALID_CONFIGURATION", "CAPACITY", "THROTTLED", "QUOTA", "FAILED"]);
    const providerCodes = codes.filter((code) => /^FLAME_(FLY|EC2)_/.test(code));
    expect(providerCodes.length).toBeGreaterThan(0);
    for (const code of providerCodes) expect(suffixes, code).toContain(code.replace(/^FLAME_(FLY|EC2)_/, ""));
  });

  it("are exactly the codes the README's Errors section lists", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("### Errors"), readme.indexOf("\n## ", readme.indexOf("### Errors")));
    const listed = [...section.matchAll(/^\|[^\n]*?`(FLAME_[A-Z0-9_]+)`/gm)].map((match) => match[1]);
    expect([...listed].sort()).toEqual([...codes].sort());
  });

  it("the README's class table names every exported error class", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("### Errors"), readme.indexOf("\n## ", readme.indexOf("### Errors")));
    const named = new Set([...section.matchAll(/^\| `([A-Za-z]+Error)` \|/gm)].map((match) => match[1]));
    for (const name of Object.keys(classes(errors)).filter((name) => name !== "FlameError")) expect(named, name).toContain(name);
  });
});

describe("instanceof across two copies of the module", () => {
  it("the copy really is another module, with its own classes", () => {
    expect(copy.FlameError).not.toBe(FlameError);
    expect(copy.BootError.prototype).not.toBe(BootError.prototype);
    expect(Object.getPrototypeOf(new copy.BootError("x"))).not.toBe(BootError.prototype);
  });

  it("holds both ways for every class, exactly as the class chain says", () => {
    const ours = classes(errors);
    const theirs = classes(copy);
    expect(Object.keys(theirs).sort()).toEqual(Object.keys(ours).sort());
    for (const [made, module] of [
      ["ours", errors],
      ["the copy's", copy],
    ] as const) {
      for (const [instanceName, instance] of Object.entries(samples(module))) {
        for (const [className, ourClass] of Object.entries(ours)) {
          // The truth: whether the instance's class is this class or one of its subclasses.
          const expected = instanceName === className || ourClass.prototype.isPrototypeOf(ours[instanceName]!.prototype);
          expect(instance instanceof ourClass, `${made} ${instanceName} instanceof our ${className}`).toBe(expected);
          expect(instance instanceof theirs[className]!, `${made} ${instanceName} instanceof the copy's ${className}`).toBe(expected);
        }
        expect(instance instanceof Error).toBe(true);
      }
    }
  });

  it("stays precise where it matters", () => {
    const timeout = new copy.BootTimeoutError("late");
    expect(timeout instanceof BootError).toBe(true);
    expect(timeout instanceof BootTimeoutError).toBe(true);
    expect(new copy.BootError("failed") instanceof BootTimeoutError).toBe(false);
    expect(new BootError("failed") instanceof copy.BootTimeoutError).toBe(false);
    expect(new copy.RemoteError({ name: "Error", message: "m" }) instanceof BootError).toBe(false);
    expect(new copy.QueueTimeoutError({ poolName: "p", functionId: "fn", waited: 1 }) instanceof BootError).toBe(false);
    expect(new copy.QueueTimeoutError({ poolName: "p", functionId: "fn", waited: 1 }) instanceof FlameError).toBe(true);
    // A subclass made outside the module (FlyApiError) is branded by its own chain.
    const fly = new FlyApiError("fly failed", { retryable: false });
    expect(fly instanceof copy.BackendError).toBe(true);
    expect(fly instanceof copy.FlameError).toBe(true);
    expect(fly instanceof copy.BootError).toBe(false);
    expect(new copy.BackendError("x", { retryable: true }) instanceof FlyApiError).toBe(false);
  });

  it("is false for what is not a FlameError", () => {
    for (const value of [null, undefined, 0, "BootError", {}, [], new Error("plain"), Object.assign(new Error("e"), { code: "FLAME_BOOT_FAILED" })]) {
      expect(value instanceof FlameError).toBe(false);
      expect(value instanceof copy.BootError).toBe(false);
    }
    // A brand that is not a list of names is no brand.
    expect({ [Symbol.for("flame-ts.error")]: "BootError" } instanceof BootError).toBe(false);
  });

  it("keeps name, code, cause, stack and own properties; the brand stays out of keys and JSON", () => {
    const cause = new Error("root");
    const error = new copy.BootTimeoutError("late", { cause });
    expect(error).toMatchObject({ name: "BootTimeoutError", code: "FLAME_BOOT_TIMEOUT", message: "late", retryable: true });
    expect(error.cause).toBe(cause);
    expect(error.stack).toMatch(/^BootTimeoutError: late\n\s+at /);
    expect(Object.getOwnPropertySymbols(error).filter((symbol) => Object.getOwnPropertyDescriptor(error, symbol)!.enumerable)).toEqual([]);
    expect(JSON.parse(JSON.stringify(error))).toEqual({ name: "BootTimeoutError", code: "FLAME_BOOT_TIMEOUT", retryable: true });
    const remote = new RemoteError({ name: "TypeError", message: "boom", stack: "TypeError: boom\n    at f (app.js:1:1)", properties: { code: "E_APP", detail: 1 } });
    expect(remote).toMatchObject({ code: "FLAME_REMOTE_ERROR", remoteName: "TypeError", remoteCode: "E_APP", detail: 1 });
    expect(remote.stack).toBe("RemoteError [TypeError]: boom\n    at f (app.js:1:1)");
  });

  it("a user's subclass is recognised by its own name too", () => {
    class PaymentFailedError extends copy.BackendError {}
    const error = new PaymentFailedError("card declined", { retryable: false });
    expect(error.name).toBe("PaymentFailedError");
    expect(error instanceof PaymentFailedError).toBe(true);
    expect(error instanceof BackendError).toBe(true);
    expect(new BackendError("x", { retryable: false }) instanceof PaymentFailedError).toBe(false);
  });
});

describe("QueueTimeoutError", () => {
  it("leads with the last boot failure, which is its cause", () => {
    const failure = new BootError('runner p-3 could not load the app: Error: DATABASE_URL is not set');
    const error = new QueueTimeoutError({ poolName: "p", functionId: "fn", waited: 30_000, lastBootFailure: failure });
    expect(error.message).toBe('no runner of pool "p" could take "fn" within bootTimeout (30000 ms): the last boot failed: runner p-3 could not load the app: Error: DATABASE_URL is not set');
    expect(error.cause).toBe(failure);
    expect(error).toMatchObject({ name: "QueueTimeoutError", code: "FLAME_QUEUE_TIMEOUT", poolName: "p", functionId: "fn", waited: 30_000 });
    expect(error.cause instanceof BootError).toBe(true);
  });

  it("adds what else the pool knows after the boot failure", () => {
    const failure = new BackendError("Fly has insufficient capacity", { retryable: true, code: ERROR_CODES.FLAME_FLY_CAPACITY });
    const error = new QueueTimeoutError({ poolName: "p", functionId: "fn", waited: 5_000, lastBootFailure: failure, detail: "runner p-4 (fly backend) has not connected back to the parent" });
    expect(error.message).toBe(
      'no runner of pool "p" could take "fn" within bootTimeout (5000 ms): the last boot failed: Fly has insufficient capacity; runner p-4 (fly backend) has not connected back to the parent',
    );
    expect(error.cause).toBe(failure);
  });

  it("without a boot failure: the detail alone, or nothing, and no cause", () => {
    const busy = new QueueTimeoutError({ poolName: "p", functionId: "fn", waited: 100, detail: "all 2 runners (max 2) stayed busy" });
    expect(busy.message).toBe('no runner of pool "p" could take "fn" within bootTimeout (100 ms): all 2 runners (max 2) stayed busy');
    expect(busy.cause).toBeUndefined();
    expect("cause" in busy).toBe(false);
    expect(new QueueTimeoutError({ poolName: "p", functionId: "fn", waited: 100 }).message).toBe('no runner of pool "p" could take "fn" within bootTimeout (100 ms)');
  });

  it("is a FlameError, not a BootError", () => {
    const error = new QueueTimeoutError({ poolName: "p", functionId: "fn", waited: 100 });
    expect(error).toBeInstanceOf(FlameError);
    expect(error).not.toBeInstanceOf(BootError);
    expect(error).not.toBeInstanceOf(BootTimeoutError);
  });
});
