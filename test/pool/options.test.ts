import { afterEach, describe, expect, it } from "vitest";
import { BackendError, QueueTimeoutError, InvalidOptionError, LocalBackend, Pool, ProcessBackend, type Backend } from "../../src/index.js";

const pools: Pool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
});

function expectInvalid(make: () => unknown, message: RegExp): void {
  let thrown: unknown;
  try {
    make();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(InvalidOptionError);
  expect((thrown as InvalidOptionError).code).toBe("FLAME_INVALID_OPTION");
  expect((thrown as Error).message).toMatch(message);
}

describe("options are validated once, with errors naming the option and the bad value", () => {
  it.each([
    [{ name: "p", max: 0 }, /Pool "p" option "max": .*>=1.*0/],
    [{ name: "p", max: 2, min: -1 }, /option "min": .*-1/],
    [{ name: "p", max: 2, min: 3 }, /min \(3\) is greater than max \(2\)/],
    [{ name: "p", max: 1.5 }, /option "max": .*integer.*1\.5/],
    [{ name: "p", max: 1, maxConcurrency: 0 }, /option "maxConcurrency"/],
    [{ name: "p", max: 1, timeout: -5 }, /option "timeout": .*milliseconds/],
    [{ name: "p", max: 1, bootTimeout: Infinity }, /option "bootTimeout"/],
    [{ name: "p", max: 1, idleShutdownAfter: "30s" }, /option "idleShutdownAfter"/],
    [{ name: "p", max: 1, idleShutdownAfter: { after: 10 } }, /option "idleShutdownAfter/],
    [{ name: "p", max: 1, backend: {} }, /option "backend": Expected a Backend/],
    [{ name: "p", max: 1, log: 42 }, /option "log"/],
    [{ name: "p", max: 1, onGrowStart: "yes" }, /option "onGrowStart"/],
    [{ name: "p", max: 1, maxQueue: -1 }, /option "maxQueue"/],
    [{ name: "p", max: 1, idleShutdownAfterr: 5 }, /unknown option "idleShutdownAfterr" \(did you mean "idleShutdownAfter"\?\)/],
    [{ name: "p", max: 1, idleShutdownAfter: { after: 5, check: () => true, chek: 1 } }, /unknown option "idleShutdownAfter.chek" \(did you mean "idleShutdownAfter.check"\?\)/],
    [{ name: "p", max: 1, colour: "blue" }, /unknown option "colour"$/],
    [{ name: "p", max: 1, log: "verbose" }, /option "log": expected a logger, one of the levels debug, info, warn, error, silent, or false; got "verbose"/],
    [{ name: "has space", max: 1 }, /option "name"/],
    [{ max: 1 }, /option "name"/],
  ])("rejects %o", (options, message) => {
    expectInvalid(() => new Pool(options as never), message);
  });

  it("accepts Infinity where it means 'never'", () => {
    const pool = new Pool({ name: "infinite", max: 1, timeout: Infinity, idleShutdownAfter: Infinity, maxQueue: Infinity, backend: new LocalBackend() });
    pools.push(pool);
    expect(pool.stats().queued).toBe(0);
  });

  it("rejects duplicate function ids and pool names, and bad per-call options, leaving the pool usable", async () => {
    const pool = new Pool({ name: "dupes", max: 1, backend: new LocalBackend(), log: false });
    pools.push(pool);
    const double = pool.define("double", (n: number) => n * 2);
    expectInvalid(() => pool.define("double", () => 0), /already has a function "double"/);
    expectInvalid(() => new Pool({ name: "dupes", max: 1 }), /a pool named "dupes" already exists/);
    await expect(pool.call(double, [2], { timeout: -1 })).rejects.toThrow(/invalid call option "timeout"/);
    await expect(pool.call(double, [2], { signal: "no" } as never)).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(pool.call((() => 1) as never, [] as never)).rejects.toThrow(/can only call functions it defined/);
    await expect(double(21)).resolves.toBe(42);
  });

  it("validates backend options too", () => {
    expectInvalid(() => new ProcessBackend({ execArgv: "--inspect" } as never), /ProcessBackend option "execArgv"/);
    expectInvalid(() => new ProcessBackend({ killTimeout: -1 }), /option "killTimeout"/);
  });
});

describe("durations a Node timer can honour: at most 2^31-1 ms", () => {
  // Node fires a timer set beyond this after 1 ms, so a month-long timeout would fail every call at once.
  const MAX = 2_147_483_647;
  const LIMIT = /Expected at most 2147483647 ms \(about 24\.8 days\)/;

  // Every duration option of the Pool, as [option path, options with the bad value, Infinity means "no limit"].
  const durations: Array<[string, (ms: number) => Record<string, unknown>, boolean]> = [
    ["timeout", (ms) => ({ timeout: ms }), true],
    ["bootTimeout", (ms) => ({ bootTimeout: ms }), false],
    ["shutdownTimeout", (ms) => ({ shutdownTimeout: ms }), false],
    ["idleShutdownAfter", (ms) => ({ idleShutdownAfter: ms }), true],
    ["idleShutdownAfter.after", (ms) => ({ idleShutdownAfter: { after: ms, check: () => true } }), true],
    ["minIdleShutdownAfter", (ms) => ({ minIdleShutdownAfter: ms }), true],
    ["abortGracePeriod", (ms) => ({ abortGracePeriod: ms }), false],
    ["runnerConnectTimeout", (ms) => ({ runnerConnectTimeout: ms }), false],
  ];

  it.each(durations)("rejects %s above the limit, naming the option, the value and the limit", (option, withValue, allowsInfinity) => {
    for (const tooLong of [MAX + 1, 30 * 24 * 60 * 60 * 1000]) {
      let thrown: unknown;
      try {
        new Pool({ name: "too-long", max: 1, backend: new LocalBackend(), log: false, ...withValue(tooLong) } as never);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(InvalidOptionError);
      const message = (thrown as Error).message;
      expect(message).toContain(`Pool "too-long" option "${option}": `);
      expect(message).toMatch(LIMIT);
      expect(message).toContain(String(tooLong));
      // Infinity is offered as the way out only where it is allowed.
      expect(message.includes("or Infinity for no limit")).toBe(allowsInfinity);
    }
  });

  it.each(durations)("accepts %s at exactly the limit, and Infinity only where documented", (option, withValue, allowsInfinity) => {
    const name = `at-limit-${option.replace(".", "-")}`;
    const pool = new Pool({ name, max: 1, backend: new LocalBackend(), log: false, ...withValue(MAX) } as never);
    pools.push(pool);
    if (allowsInfinity) {
      pools.push(new Pool({ name: `${name}-infinite`, max: 1, backend: new LocalBackend(), log: false, ...withValue(Infinity) } as never));
    } else {
      expectInvalid(
        () => new Pool({ name: `${name}-infinite`, max: 1, backend: new LocalBackend(), log: false, ...withValue(Infinity) } as never),
        new RegExp(`option "${option}": Expected a finite number of milliseconds >= 0 but received Infinity`),
      );
    }
  });

  it("heartbeatInterval is at most a third of the limit: the runner's liveness timer waits three intervals", () => {
    const third = Math.floor(MAX / 3);
    pools.push(new Pool({ name: "heartbeat-third", max: 1, backend: new LocalBackend(), log: false, heartbeatInterval: third }));
    expectInvalid(
      () => new Pool({ name: "heartbeat-over", max: 1, backend: new LocalBackend(), log: false, heartbeatInterval: third + 1 }),
      new RegExp(`option "heartbeatInterval": Expected at most ${third} ms`),
    );
  });

  it("a call's timeout has the same limit; at the limit or Infinity the call runs to its end", async () => {
    const pool = new Pool({ name: "call-limit", max: 1, backend: new LocalBackend(), log: false });
    pools.push(pool);
    // Long enough that a timer which overflowed (and fired after 1 ms) would have timed it out.
    const slow = pool.define("slow", async () => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      return "done";
    });
    const error = await pool.call(slow, [], { timeout: MAX + 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as Error).message).toMatch(/invalid call option "timeout": Expected at most 2147483647 ms \(about 24\.8 days\), or Infinity for no limit, but received 2147483648/);
    await expect(pool.call(slow, [], { timeout: MAX })).resolves.toBe("done");
    await expect(pool.call(slow, [], { timeout: Infinity })).resolves.toBe("done");
  });

  it("a pool-wide timeout at the limit does not fire early either", async () => {
    const pool = new Pool({ name: "pool-limit", max: 1, timeout: MAX, backend: new LocalBackend(), log: false });
    pools.push(pool);
    const slow = pool.define("slow", async () => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      return "done";
    });
    await expect(slow()).resolves.toBe("done");
  });

  it("ProcessBackend's killTimeout has the limit too, and no Infinity (a runner must end)", () => {
    expectInvalid(() => new ProcessBackend({ killTimeout: MAX + 1 }), /ProcessBackend option "killTimeout": Expected at most 2147483647 ms \(about 24\.8 days\), but received 2147483648/);
    expectInvalid(() => new ProcessBackend({ killTimeout: Infinity }), /option "killTimeout": Expected a finite number/);
    expect(() => new ProcessBackend({ killTimeout: MAX })).not.toThrow();
  });
});

describe("what a backend tells the pool", () => {
  it("start() runs the backend's permission check before booting anything", async () => {
    let provisions = 0;
    const local = new LocalBackend();
    const backend: Backend = {
      name: "checked",
      checkPermissions: async () => {
        throw new BackendError("not allowed: ec2:RunInstances", { retryable: false });
      },
      provision: (request) => {
        provisions += 1;
        return local.provision(request);
      },
      terminate: (runner) => local.terminate(runner),
      list: (filter) => local.list(filter),
    };
    const pool = new Pool({ name: "checked", min: 1, max: 1, backend, log: false });
    pools.push(pool);
    await expect(pool.start()).rejects.toThrow(/not allowed: ec2:RunInstances/);
    expect(provisions).toBe(0);
  });

  it("a backend's defaultBootTimeout applies when the pool sets none", async () => {
    const never: Backend = {
      name: "slow",
      defaultBootTimeout: 150,
      provision: async (request) => ({ runnerId: request.runnerId, providerId: "never" }),
      terminate: async () => undefined,
      list: async () => [],
    };
    const pool = new Pool({ name: "slow-default", max: 1, backend: never, log: false });
    pools.push(pool);
    const fn = pool.define("fn", () => 1);
    const error = await fn().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueueTimeoutError);
    expect((error as Error).message).toMatch(/within bootTimeout \(150 ms\)/);
  });
});
