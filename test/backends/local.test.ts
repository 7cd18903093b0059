import { afterEach, describe, expect, it } from "vitest";
import { CallTimeoutError, LocalBackend, QueueFullError, RemoteError } from "../../src/index.js";
import { makePool } from "../fixtures/app.js";
import { waitFor } from "../support/processes.js";

const pools: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
});

describe("LocalBackend: in-process runners with the same semantics", () => {
  it("runs calls in this process through the real protocol, with limits, timeouts, errors and idle shutdown", async () => {
    const { pool, add, whoami, sleep, fail, waitForAbort } = makePool({
      name: "local",
      max: 1,
      maxConcurrency: 1,
      maxQueue: 1,
      idleShutdownAfter: 100,
      backend: new LocalBackend(),
    });
    pools.push(pool);
    await expect(add(1, 2)).resolves.toBe(3);
    const me = await whoami();
    expect(me.pid).toBe(process.pid);
    expect(me.isRunner).toBe(false);

    const running = sleep(100);
    const queued = sleep(1);
    await expect(sleep(1)).rejects.toBeInstanceOf(QueueFullError);
    await Promise.all([running, queued]);

    await expect(pool.call(waitForAbort, [], { timeout: 50 })).rejects.toBeInstanceOf(CallTimeoutError);
    await expect(fail("local failure")).rejects.toBeInstanceOf(RemoteError);
    await expect(pool.call(add, [{ notANumber: () => 1 } as never, 1])).rejects.toThrow(/cannot serialize/);

    await waitFor(() => pool.stats().runners.ready === 0, "the local runner to idle down");
    expect(await pool.backend.list()).toEqual([]);
  });
});
