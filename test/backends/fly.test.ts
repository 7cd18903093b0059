/**
 * FlyBackend against the Fly Machines API emulator: every machine is a real
 * runner process, every request is checked against Fly's OpenAPI spec.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FlyApiError, FlyBackend, type FlyBackendOptions } from "../../src/backends/fly.js";
import { createMachineRequest, resolveFlyOptions } from "../../src/backends/fly/options.js";
import { describeFlyEmulator, parseFlyEmulatorArgs } from "../../src/emulators/fly/cli.js";
import type { FlyEmulator } from "../../src/emulators/fly/emulator.js";
import { OpenApiContract } from "../../src/emulators/fly/openapi.js";
import { BackendError, BootError, QueueTimeoutError, InvalidOptionError, RunnerExitedError, type GrowResult } from "../../src/index.js";
import { consoleLogger } from "../../src/log.js";
import { fixtureEntry, makePool } from "../fixtures/app.js";
import { copyOf, fromCopy } from "../support/backends.js";
import { AGENT_MAIN, liveMachines, pretendParentOnFly, startTestEmulator, TEST_IMAGE, testFlyBackend } from "../support/fly.js";
import { isAlive, waitFor } from "../support/processes.js";

pretendParentOnFly();
// The parent holds a Fly token in its environment; runners must never see it.
process.env.FLY_API_TOKEN = "parent-secret-fly-token";

let emulator: FlyEmulator;
const pools: { stop(): Promise<void> }[] = [];

beforeEach(async () => {
  emulator = await startTestEmulator();
});

afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
  const violations = emulator.violations();
  await emulator.close();
  // No request of the backend broke Fly's spec, and no response of the emulator did.
  expect(violations).toEqual([]);
});

function pool(options: Parameters<typeof makePool>[0]) {
  const made = makePool({ bootTimeout: 10_000, runnerConnectTimeout: 3_000, heartbeatInterval: 250, ...options });
  pools.push(made.pool);
  return made;
}

function creates() {
  return emulator.requests().filter((request) => request.operationId === "Machines_create");
}

describe("FlyBackend on the emulator", () => {
  it("scales from 0 to max and back to 0, destroying every machine", async () => {
    const backend = testFlyBackend(emulator, { env: { APP_SETTING: "on" }, metadata: { team: "data" } });
    const { pool: p, sleep } = pool({ name: "scale", max: 3, maxConcurrency: 1, idleShutdownAfter: 300, backend });
    expect(emulator.machines()).toEqual([]);

    // Calls that outlast any boot on a loaded machine, so no runner can serve two of them.
    const results = await Promise.all([p.call(sleep, [1_000]), p.call(sleep, [1_000]), p.call(sleep, [1_000])]);
    expect(new Set(results.map((result) => result.runnerId)).size).toBe(3);
    const machines = emulator.machines();
    expect(machines).toHaveLength(3);
    for (const machine of machines) {
      expect(machine.config).toMatchObject({
        image: TEST_IMAGE,
        auto_destroy: true,
        restart: { policy: "no" },
        guest: { cpu_kind: "performance", cpus: 1, memory_mb: 4096 },
        metadata: { flame_pool: "scale", team: "data" },
      });
      expect(machine.config.services).toBeUndefined();
      expect(machine.name).toMatch(/^flame-scale-/);
      expect(results.map((result) => result.runnerId)).toContain(machine.config.metadata.flame_runner);
      expect(machine.config.metadata.flame_parent).toEqual(expect.any(String));
      // Only what the runner needs: never the parent's environment or its Fly token.
      expect(Object.keys(machine.config.env).sort()).toEqual(["APP_SETTING", "FLAME_ENTRY", "FLAME_PARENT"]);
      expect(JSON.stringify(machine.env)).not.toContain("parent-secret-fly-token");
      expect(machine.env.FLY_MACHINE_ID).toBe(machine.id);
    }

    // Idle runners shut down and their machines are destroyed.
    await waitFor(() => liveMachines(emulator).length === 0, "every machine to be destroyed", 8_000);
    await waitFor(() => Object.values(p.stats().runners).every((count) => count === 0), "the pool to count no runner");
    for (const machine of machines) if (machine.pid) expect(isAlive(machine.pid)).toBe(false);
    expect(await backend.list({ pool: "scale" })).toEqual([]);
  });

  it("paces a burst of creates to Fly's limit of 1 per second with bursts of 3", async () => {
    const { pool: p } = pool({ name: "burst", min: 5, max: 5, backend: testFlyBackend(emulator) });
    await p.start();

    const times = creates().map((request) => request.at);
    expect(times).toHaveLength(5);
    expect(creates().every((request) => request.status === 200)).toBe(true);
    // Three at once, then one per second: the emulator enforces Fly's limit and refused none.
    expect(times[4]! - times[0]!).toBeGreaterThanOrEqual(1_900);
    expect(emulator.requests().filter((request) => request.status === 429)).toEqual([]);
  });

  it("the emulator does refuse a burst beyond Fly's limit", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      const response = await fetch(`${emulator.url}/v1/apps/${emulator.app}/machines`, {
        method: "POST",
        headers: { authorization: `Bearer ${emulator.token}`, "content-type": "application/json" },
        body: JSON.stringify({ config: { image: TEST_IMAGE, init: { exec: [process.execPath, "-e", ""] }, auto_destroy: true, restart: { policy: "no" } } }),
      });
      statuses.push(response.status);
      if (response.status === 429) expect(response.headers.get("retry-after")).toBe("1");
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    await waitFor(() => liveMachines(emulator).length === 0, "the short-lived machines to be auto-destroyed");
  });

  it("retries 429 (honouring Retry-After), capacity errors and conflicts, then boots", async () => {
    emulator.failNext("create", { status: 429, retryAfterSeconds: 1 });
    emulator.failNext("create", { status: 412, flyStatus: "insufficient_capacity" });
    emulator.failNext("create", { status: 409 });
    emulator.failNext("create", { status: 422 });
    const { pool: p, echo } = pool({ name: "retry", max: 1, backend: testFlyBackend(emulator) });

    await expect(p.call(echo, ["through"])).resolves.toBe("through");
    const attempts = creates();
    expect(attempts.map((request) => request.status)).toEqual([429, 412, 409, 422, 200]);
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(950);
    expect(emulator.machines()).toHaveLength(1);
  });

  it("reports lasting insufficient capacity as such", async () => {
    emulator.failNext("create", { status: 412, flyStatus: "insufficient_capacity", times: 1_000 });
    const { pool: p, echo } = pool({ name: "capacity", max: 1, bootTimeout: 1_500, backend: testFlyBackend(emulator) });

    const error = (await p.call(echo, [1]).catch((caught: Error) => caught)) as Error;
    expect(error).toBeInstanceOf(BootError);
    expect(error.message).toMatch(/insufficient capacity/);
    expect(emulator.machines()).toEqual([]);
  });

  it("fails fast on 401 with a message naming the token, not its value", async () => {
    const { pool: p, echo } = pool({ name: "unauthorized", max: 2, backend: testFlyBackend(emulator, { token: "wrong-token-value" }) });
    const started = Date.now();
    const error = (await p.call(echo, [1]).catch((caught: Error) => caught)) as BootError;

    expect(Date.now() - started).toBeLessThan(3_000);
    expect(error).toBeInstanceOf(BootError);
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/rejected the API token from the FlyBackend "token" option \(HTTP 401\)/);
    expect(error.message).toMatch(/fly-request-id/);
    expect(error.message).not.toContain("wrong-token-value");
    expect((error.cause as FlyApiError).code).toBe("FLAME_FLY_UNAUTHORIZED");
    expect(creates()).toHaveLength(1);

    // From the environment, the message names FLY_API_TOKEN.
    const fromEnv = new FlyBackend({ app: emulator.app, baseUrl: emulator.url, image: TEST_IMAGE });
    const listing = await fromEnv.list().catch((caught: Error) => caught);
    expect(listing).toBeInstanceOf(FlyApiError);
    expect((listing as Error).message).toMatch(/token from FLY_API_TOKEN/);
    expect((listing as Error).message).not.toContain("parent-secret-fly-token");
  });

  it("reports 429s that last past the boot's deadline as throttling", async () => {
    emulator.failNext("create", { status: 429, times: 1_000 });
    const { pool: p, echo } = pool({ name: "throttled", max: 1, bootTimeout: 1_500, backend: testFlyBackend(emulator) });
    const error = (await p.call(echo, [1]).catch((caught: Error) => caught)) as BootError;
    expect(error.cause).toMatchObject({ code: "FLAME_FLY_THROTTLED", status: 429 });
  });

  it("fails any other status with Fly's error text and its fly-request-id", async () => {
    emulator.failNext("create", { status: 400, error: "invalid config.guest: memory_mb too small for cpu_kind" });
    const { pool: p, echo } = pool({ name: "invalid", max: 1, backend: testFlyBackend(emulator) });
    const error = (await p.call(echo, [1]).catch((caught: Error) => caught)) as BootError;
    expect(error.message).toMatch(/HTTP 400: invalid config\.guest: memory_mb too small for cpu_kind \(fly-request-id 01emulated[0-9a-f]+\)/);
    expect((error.cause as FlyApiError).retryable).toBe(false);
    expect(creates()).toHaveLength(1);
  });

  it("pool.start() checks the token and the app before creating anything", async () => {
    const badToken = pool({ name: "start-token", min: 1, max: 1, backend: testFlyBackend(emulator, { token: "not-the-token" }) });
    await expect(badToken.pool.start()).rejects.toThrow(/could not read app "flame-emulated": the Fly Machines API rejected the API token/);
    const badApp = pool({ name: "start-app", min: 1, max: 1, backend: testFlyBackend(emulator, { app: "no-such-app" }) });
    const missingApp = await badApp.pool.start().catch((error: unknown) => error);
    expect((missingApp as Error).message).toMatch(/Fly app "no-such-app" not found \(HTTP 404\)/);
    expect(missingApp).toMatchObject({ code: "FLAME_FLY_INVALID_CONFIGURATION", retryable: false });
    const saved = process.env.FLY_IMAGE_REF;
    delete process.env.FLY_IMAGE_REF;
    try {
      await expect(pool({ name: "start-image", min: 1, max: 1, backend: testFlyBackend(emulator, { image: undefined }) }).pool.start()).rejects.toThrow(
        /FlyBackend needs an image/,
      );
    } finally {
      process.env.FLY_IMAGE_REF = saved;
    }
    expect(creates()).toEqual([]);
    // The same backend with good settings starts.
    const good = pool({ name: "start-good", min: 1, max: 1, backend: testFlyBackend(emulator) });
    await good.pool.start();
    expect(good.pool.stats().runners.ready).toBe(1);
  });

  it("a boot timeout destroys the machine that never started", async () => {
    emulator.nextBoots({ kind: "never-start" });
    const results: GrowResult[] = [];
    const { pool: p, echo } = pool({ name: "stuck", max: 1, bootTimeout: 1_000, backend: testFlyBackend(emulator), onGrowEnd: (result) => results.push(result) });

    await expect(p.call(echo, [1])).rejects.toBeInstanceOf(QueueTimeoutError);
    const stuck = emulator.machines()[0]!;
    expect(stuck.events.some((event) => event.type === "start")).toBe(false);
    await waitFor(() => emulator.machines()[0]!.state === "destroyed", "the stuck machine to be destroyed", 5_000);
    // The boot reports its end once the backend's terminate has returned, a moment after the destroy.
    await waitFor(() => results.length > 0, "the boot to report its end", 5_000);
    expect(results[0]).toMatchObject({ ok: false });
  });

  it("a slow boot within bootTimeout is waited for", async () => {
    emulator.nextBoots({ kind: "slow", delay: 600 });
    const { pool: p, echo } = pool({ name: "slow", max: 1, backend: testFlyBackend(emulator) });
    const started = Date.now();
    await expect(p.call(echo, ["late"])).resolves.toBe("late");
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
  });

  it("a runner that crashes on boot fails its boot at once, and the pool boots another", async () => {
    emulator.nextBoots({ kind: "crash", exitCode: 3 });
    const results: GrowResult[] = [];
    const { pool: p, echo } = pool({ name: "crashy", max: 1, bootTimeout: 20_000, backend: testFlyBackend(emulator), onGrowEnd: (result) => results.push(result) });
    const started = Date.now();

    await expect(p.call(echo, ["second try"])).resolves.toBe("second try");
    // Far sooner than bootTimeout: the backend watched the machine go.
    expect(Date.now() - started).toBeLessThan(10_000);
    const [crashed, healthy] = emulator.machines();
    expect(crashed).toMatchObject({ state: "destroyed", exitCode: 3 });
    expect(healthy!.state).toBe("started");
    expect(results[0]).toMatchObject({ ok: false });
    expect((results[0] as { error: Error }).error.message).toMatch(new RegExp(`machine ${crashed!.id} exited with code 3`));
  });

  it("killing a runner's process mid-call gives RunnerExitedError and its machine is destroyed", async () => {
    const { pool: p, sleep } = pool({ name: "killed", max: 1, backend: testFlyBackend(emulator) });
    const call = p.call(sleep, [10_000]);
    await waitFor(() => p.stats().inFlight === 1, "the call to run");
    const machine = emulator.machines()[0]!;
    process.kill(machine.pid!, "SIGKILL");

    await expect(call).rejects.toBeInstanceOf(RunnerExitedError);
    await waitFor(() => emulator.machines()[0]!.state === "destroyed", "the machine to be destroyed");
  });

  it("a create whose answer was lost is found by runner id: no machine leaked or doubled", async () => {
    emulator.failNext("create", { dropConnection: true, afterHandling: true });
    const { pool: p, whoami } = pool({ name: "lost", max: 1, backend: testFlyBackend(emulator) });

    const { runnerId } = await p.call(whoami, []);
    expect(emulator.machines()).toHaveLength(1);
    expect(emulator.machines()[0]!.config.metadata.flame_runner).toBe(runnerId);
    expect(creates()).toHaveLength(1);
    const lookups = emulator.requests().filter((request) => request.operationId === "Machines_list");
    expect(lookups[0]!.query).toEqual({ "metadata.flame_runner": [runnerId] });
  });

  it("a runner that connects before its create is answered is welcomed", async () => {
    emulator.failNext("create", { delayAnswer: 1_500 });
    const { pool: p, echo } = pool({ name: "early", max: 1, backend: testFlyBackend(emulator) });
    await expect(p.call(echo, ["early"])).resolves.toBe("early");
    expect(emulator.machines()).toHaveLength(1);
  });

  it("a create lost before Fly made the machine is sent again", async () => {
    emulator.failNext("create", { dropConnection: true });
    const { pool: p, echo } = pool({ name: "lost-early", max: 1, backend: testFlyBackend(emulator) });

    await expect(p.call(echo, [2])).resolves.toBe(2);
    expect(creates().map((request) => request.fault ?? request.status)).toEqual(["dropped", 200]);
    expect(emulator.machines()).toHaveLength(1);
  });

  it("reaping after a parent crashed destroys its orphans, and nothing else", async () => {
    // Machines a crashed parent left: still running, their parent gone.
    const crashed = testFlyBackend(emulator, { init: { cmd: [process.execPath, "-e", "setInterval(() => {}, 1000)"] } });
    const request = (runnerId: string, pool: string) => ({
      runnerId,
      pool,
      parentId: "crashed-parent",
      env: {},
      entry: undefined,
      deadline: Date.now() + 5_000,
      signal: new AbortController().signal,
      log: consoleLogger("silent"),
    });
    const orphan = await crashed.provision(request("reaped-1", "reaped"));
    const other = await crashed.provision(request("other-1", "elsewhere"));
    await waitFor(() => liveMachines(emulator).every((machine) => machine.state === "started"), "the orphans to run");

    const backend = testFlyBackend(emulator);
    expect(await backend.list({ pool: "reaped" })).toEqual([
      { runnerId: "reaped-1", providerId: orphan.providerId, pool: "reaped", parentId: "crashed-parent", state: "started" },
    ]);
    const { pool: p } = pool({ name: "reaped", max: 1, backend });
    expect(await p.reap()).toEqual(["reaped-1"]);

    await waitFor(() => emulator.machines().find((machine) => machine.id === orphan.providerId)!.state === "destroyed", "the orphan to be destroyed");
    expect(emulator.machines().find((machine) => machine.id === other.providerId)!.state).toBe("started");
    await crashed.terminate(other);
  });

  it("killing the parent leaves no machine running after the runners' failsafe window", async () => {
    const parentScript = fileURLToPath(new URL("../support/fly-parent.ts", import.meta.url));
    // Configured as the fly-emulator command says: FlyBackend's defaults, from the environment only.
    const flyEnvironment = Object.fromEntries(
      [...describeFlyEmulator(emulator).matchAll(/export (\w+)=(\S+)/g)].map(([, key, value]) => [key!, value!]),
    );
    expect(Object.keys(flyEnvironment).sort()).toEqual(["FLY_API_HOSTNAME", "FLY_API_TOKEN", "FLY_APP_NAME", "FLY_IMAGE_REF", "FLY_PRIVATE_IP"]);
    const parent = spawn(process.execPath, fromCopy(parentScript), {
      env: { ...process.env, ...flyEnvironment, RUNNERS: "2" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise((resolve) => parent.once("exit", resolve));
    const firstLine = await new Promise<string>((resolve, reject) => {
      createInterface({ input: parent.stdout! }).once("line", resolve);
      parent.once("exit", (code) => reject(new Error(`the parent exited (${code}) before its runners were ready`)));
    });
    expect(JSON.parse(firstLine)).toEqual({ ready: 2 });
    const machines = liveMachines(emulator);
    expect(machines).toHaveLength(2);
    expect(machines.every((machine) => machine.state === "started")).toBe(true);
    // The default command: the parent's node and flags, the runner agent and the entry, at the parent's paths (the copy's).
    expect(machines[0]!.config.init.cmd).toEqual([process.execPath, ...fromCopy(AGENT_MAIN), copyOf(fixtureEntry)]);

    parent.kill("SIGKILL");
    await exited;
    // Runners see their connection drop (or their parent fall silent) and exit; auto_destroy does the rest.
    await waitFor(() => liveMachines(emulator).length === 0, "every machine to be destroyed after the parent died", 5_000);
    for (const machine of machines) expect(isAlive(machine.pid!)).toBe(false);
  });

  it("the emulator rejects requests Fly's spec does not allow, and says why", async () => {
    // Its own emulator: the shared one's violations must stay empty.
    const strict = await startTestEmulator();
    try {
      const response = await fetch(`${strict.url}/v1/apps/${strict.app}/machines`, {
        method: "POST",
        headers: { authorization: `Bearer ${strict.token}`, "content-type": "application/json" },
        body: JSON.stringify({ config: { image: TEST_IMAGE, autoDestroy: true, guest: { cpus: "2" } } }),
      });
      expect(response.status).toBe(400);
      const { error } = (await response.json()) as { error: string };
      expect(error).toMatch(/must NOT have additional properties "autoDestroy"/);
      expect(error).toMatch(/\/config\/guest\/cpus must be integer/);
      expect(strict.violations()).toHaveLength(1);
      expect(strict.machines()).toEqual([]);
    } finally {
      await strict.close();
    }
  });
});

describe("app secrets", () => {
  // The README's set-up: the Machines API token is the app secret FLY_API_TOKEN, beside the app's own secrets.
  const appSecrets = { FLY_API_TOKEN: "app-secret-token", DATABASE_URL: "postgres://db", REDIS_URL: "redis://cache" };

  /** Boots one runner of a pool on `backendOptions`, and returns the environment its process got and the create request's body. */
  async function bootOne(withSecrets: FlyEmulator, name: string, backendOptions: Parameters<typeof testFlyBackend>[1]) {
    const { pool: p, echo } = pool({ name, max: 1, backend: testFlyBackend(withSecrets, backendOptions) });
    await expect(p.call(echo, [name])).resolves.toBe(name);
    const machine = withSecrets.machines().find((each) => each.config.metadata.flame_pool === name)!;
    const create = withSecrets.requests().find((request) => request.operationId === "Machines_create" && request.status === 200 && (request.body as any)?.config?.metadata?.flame_pool === name);
    return { env: machine.env, body: create?.body as Record<string, any> | undefined };
  }

  it("by default keeps every app secret, FLY_API_TOKEN included, out of runners; a list lets in exactly those; \"all\" lets in everything", async () => {
    const withSecrets = await startTestEmulator({ secrets: appSecrets });
    try {
      const byDefault = await bootOne(withSecrets, "default", {});
      for (const secret of Object.keys(appSecrets)) expect(byDefault.env[secret]).toBeUndefined();
      expect(Object.values(byDefault.env)).not.toContain("app-secret-token");
      expect(byDefault.env.FLY_MACHINE_ID).toEqual(expect.any(String));
      expect(byDefault.body).toMatchObject({ skip_secrets: true });

      const listed = await bootOne(withSecrets, "listed", { secrets: ["DATABASE_URL", { envVar: "CACHE_URL", name: "REDIS_URL" }] });
      expect(listed.env.DATABASE_URL).toBe("postgres://db");
      expect(listed.env.CACHE_URL).toBe("redis://cache");
      expect(listed.env.REDIS_URL).toBeUndefined();
      expect(listed.env.FLY_API_TOKEN).toBeUndefined();
      expect(Object.values(listed.env)).not.toContain("app-secret-token");
      expect(listed.body!.skip_secrets).toBeUndefined();
      expect(listed.body!.config.processes).toEqual([
        { ignore_app_secrets: true, secrets: [{ env_var: "DATABASE_URL" }, { env_var: "CACHE_URL", name: "REDIS_URL" }] },
      ]);

      const all = await bootOne(withSecrets, "all", { secrets: "all" });
      expect(all.env).toMatchObject(appSecrets);

      await Promise.all(pools.splice(0).map((each) => each.stop()));
      // Every create request passed Fly's spec.
      expect(withSecrets.violations()).toEqual([]);
    } finally {
      await withSecrets.close();
    }
  });

  it("maps each choice onto the create request as Fly's spec defines it", () => {
    const body = (secrets?: FlyBackendOptions["secrets"]) => {
      const options = resolveFlyOptions(secrets === undefined ? {} : { secrets }, { FLY_APP_NAME: "app", FLY_IMAGE_REF: "registry.fly.io/app:v1" });
      return createMachineRequest({ ...options, image: options.image! }, {
        runnerId: "p-1",
        pool: "p",
        parentId: "parent",
        entry: "/app/main.js",
        env: { FLAME_PARENT: "encoded" },
        deadline: Date.now() + 1_000,
        signal: new AbortController().signal,
        log: consoleLogger("silent"),
      }) as { skip_secrets?: boolean; config: { processes?: unknown } };
    };
    expect(body()).toMatchObject({ skip_secrets: true });
    expect(body().config.processes).toBeUndefined();
    expect(body("none").skip_secrets).toBe(true);
    expect(body([]).skip_secrets).toBe(true);
    const listed = body(["DATABASE_URL", { envVar: "CACHE_URL", name: "REDIS_URL" }, { envVar: "PLAIN" }]);
    expect(listed.skip_secrets).toBeUndefined();
    expect(listed.config.processes).toEqual([
      { ignore_app_secrets: true, secrets: [{ env_var: "DATABASE_URL" }, { env_var: "CACHE_URL", name: "REDIS_URL" }, { env_var: "PLAIN" }] },
    ]);
    const all = body("all");
    expect(all.skip_secrets).toBeUndefined();
    expect(all.config.processes).toBeUndefined();
  });

  it("refuses a list naming the FLY_API_TOKEN secret, bad names, and the removed skipSecrets", () => {
    expect(() => new FlyBackend({ secrets: ["DATABASE_URL", "FLY_API_TOKEN"] })).toThrow(InvalidOptionError);
    expect(() => new FlyBackend({ secrets: ["FLY_API_TOKEN"] })).toThrow(/"secrets\.0".*Machines API token.*secrets: "all"/);
    expect(() => new FlyBackend({ secrets: [{ envVar: "TOKEN", name: "FLY_API_TOKEN" }] })).toThrow(/"secrets\.0"/);
    // A separate token, under another secret name, may be handed to runners under any variable.
    expect(() => new FlyBackend({ secrets: [{ envVar: "FLY_API_TOKEN", name: "RUNNER_FLY_API_TOKEN" }] })).not.toThrow();
    expect(() => new FlyBackend({ secrets: ["not a name"] })).toThrow(/"secrets\.0"/);
    expect(() => new FlyBackend({ secrets: "some" as "all" })).toThrow(/"secrets"/);
    for (const skipSecrets of [true, false]) {
      expect(() => new FlyBackend({ skipSecrets } as FlyBackendOptions)).toThrow(/"skipSecrets": it was removed.*secrets: "all"/);
    }
  });

  it("the emulator refuses a process secret without a valid env_var", async () => {
    const response = await fetch(`${emulator.url}/v1/apps/${emulator.app}/machines`, {
      method: "POST",
      headers: { authorization: `Bearer ${emulator.token}`, "content-type": "application/json" },
      body: JSON.stringify({ config: { image: TEST_IMAGE, processes: [{ ignore_app_secrets: true, secrets: [{ name: "DATABASE_URL" }] }] } }),
    });
    expect(response.status).toBe(422);
    expect(((await response.json()) as { error: string }).error).toMatch(/env_var/);
    expect(emulator.machines()).toEqual([]);
  });
});

describe("the emulator's machine lifecycle", () => {
  it("waits for states (408 on timeout), stops, and auto-destroys", async () => {
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`${emulator.url}/v1/apps/${emulator.app}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${emulator.token}`, "content-type": "application/json" },
      });
    const created = await api("/machines", {
      method: "POST",
      body: JSON.stringify({ config: { image: TEST_IMAGE, auto_destroy: true, init: { cmd: [process.execPath, "-e", "setInterval(() => {}, 1000)"] } } }),
    });
    const { id } = (await created.json()) as { id: string };
    expect((await (await api(`/machines/${id}/wait?state=started&timeout=5`)).json()) as object).toMatchObject({ ok: true, state: "started" });
    expect((await api(`/machines/${id}/wait?state=stopped&timeout=1`)).status).toBe(408);
    expect((await api(`/machines/${id}`, { method: "DELETE" })).status).toBe(412);
    expect((await api(`/machines/${id}/stop`, { method: "POST", body: JSON.stringify({ signal: "SIGTERM" }) })).status).toBe(200);
    expect(((await (await api(`/machines/${id}/wait?state=destroyed&timeout=5`)).json()) as { state: string }).state).toBe("destroyed");
    expect((await api(`/machines/${id}`, { method: "DELETE" })).status).toBe(404);
    const app = (await (await api("")).json()) as { name: string };
    expect(app.name).toBe(emulator.app);
    expect((await fetch(`${emulator.url}/v1/apps/${emulator.app}/machines`)).status).toBe(401);
  });
});

describe("the emulator's OpenAPI 3.0 checks", () => {
  it("follow $refs into the components, allow nullable, and refuse what the spec does not declare", async () => {
    const directory = mkdtempSync(join(tmpdir(), "fly-spec-"));
    const specPath = join(directory, "spec.json");
    writeFileSync(
      specPath,
      JSON.stringify({
        openapi: "3.0.1",
        paths: {
          "/things/{id}": {
            post: {
              operationId: "Things_create",
              parameters: [
                { name: "id", in: "path", required: true, schema: { type: "string" } },
                { name: "count", in: "query", schema: { type: "integer" } },
              ],
              requestBody: { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/Thing" } } } },
              responses: { "200": { content: { "application/json": { schema: { $ref: "#/components/schemas/Thing" } } } } },
            },
          },
        },
        components: {
          schemas: {
            Thing: {
              type: "object",
              properties: {
                label: { type: "string", nullable: true, example: "x" },
                kind: { type: "string", enum: ["a", "b"], nullable: true },
                child: { $ref: "#/components/schemas/Child" },
              },
            },
            Child: { type: "object", properties: { size: { type: "integer" } } },
          },
        },
      }),
    );
    try {
      const strict = await OpenApiContract.load(specPath, { strict: true });
      const loose = await OpenApiContract.load(specPath, { strict: false });
      // Compiled once per spec and mode in a process: every emulator of a test suite shares it.
      expect(await OpenApiContract.load(specPath, { strict: true })).toBe(strict);
      expect(loose).not.toBe(strict);
      const { operation, pathParameters } = strict.match("POST", "/things/t%201")!;
      expect(pathParameters).toEqual({ id: "t 1" });
      expect(strict.match("GET", "/things/t1")).toBeUndefined();
      const check = (contract: OpenApiContract, body: unknown, query = "") =>
        contract.checkRequest(contract.match("POST", "/things/t1")!.operation, { query: new URLSearchParams(query), body: { present: true, value: body } });

      expect(check(strict, { label: null, kind: null, child: { size: 1 } }, "count=3")).toEqual([]);
      expect(check(strict, { label: 3 })[0]).toMatch(/\/label must be string,null/);
      expect(check(strict, { kind: "c" })[0]).toMatch(/\/kind must be equal to one of the allowed values/);
      expect(check(strict, { child: { size: "1" } })[0]).toMatch(/\/child\/size must be integer/);
      expect(check(strict, { child: { size: 1, colour: "red" } })[0]).toMatch(/additional properties "colour"/);
      expect(check(loose, { child: { size: 1, colour: "red" } })).toEqual([]);
      expect(check(strict, {}, "count=many")[0]).toMatch(/query parameter "count"="many" must be integer/);
      expect(check(strict, {}, "other=1")[0]).toMatch(/query parameter "other" is not in the spec/);
      expect(strict.checkRequest(operation, { query: new URLSearchParams(), body: { present: false, value: undefined } })).toEqual([
        "Things_create requires a JSON request body",
      ]);
      expect(strict.checkResponse(operation, 200, { label: "ok" })).toEqual([]);
      expect(strict.checkResponse(operation, 200, { label: 1 })).toHaveLength(1);
      expect(strict.checkResponse(operation, 201, {})).toEqual(["Things_create declares no 201 response"]);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});

describe("FlyBackend options", () => {
  it("validates options, naming the bad one", () => {
    expect(() => new FlyBackend({ guest: { cpus: 0 } })).toThrow(InvalidOptionError);
    expect(() => new FlyBackend({ guest: { cpus: 0 } })).toThrow(/"guest\.cpus"/);
    expect(() => new FlyBackend({ baseUrl: "not a url" })).toThrow(/"baseUrl"/);
    expect(() => new FlyBackend({ stopConfig: { signal: "SIGFOO" as "SIGINT" } })).toThrow(/"stopConfig\.signal"/);
  });

  it("builds the create request from the options and the environment", () => {
    const options = resolveFlyOptions(
      {
        guest: { cpuKind: "shared", cpus: 2, memoryMb: 1024, gpuKind: "a100-pcie-40gb", gpus: 1 },
        env: { MODE: "runner" },
        init: { exec: ["/app/bin/runner"] },
        metadata: { team: "data", flame_pool: "not-mine" },
        services: [{ protocol: "tcp", internal_port: 8080 }],
        stopConfig: { signal: "SIGTERM", timeout: 1_500 },
      },
      { FLY_API_HOSTNAME: "http://_api.internal:4280", FLY_REGION: "cdg", FLY_APP_NAME: "app", FLY_IMAGE_REF: "registry.fly.io/app:v2" },
    );
    expect(options.baseUrl).toBe("http://_api.internal:4280");
    expect(resolveFlyOptions({}, { FLY_API_HOSTNAME: "_api.internal:4280" }).baseUrl).toBe("http://_api.internal:4280");
    expect(resolveFlyOptions({}, {}).baseUrl).toBe("https://api.machines.dev");
    expect(() => resolveFlyOptions({}, { FLY_API_HOSTNAME: "http://[oops" })).toThrow(/FLY_API_HOSTNAME/);
    const savedBuild = process.env.FLAME_BUILD_ID;
    process.env.FLAME_BUILD_ID = "abc123";
    try {
      const body = createMachineRequest({ ...options, image: options.image! }, {
        runnerId: "Pool_1.x-2-abc",
        pool: "Pool_1.x",
        parentId: "parent-9",
        env: { FLAME_PARENT: "encoded" },
        entry: "/app/dist/main.js",
        deadline: Date.now() + 1_000,
        signal: new AbortController().signal,
        log: consoleLogger("silent"),
      });
      expect(body).toEqual({
        name: "flame-pool-1-x-2-abc",
        region: "cdg",
        skip_secrets: true,
        config: {
          image: "registry.fly.io/app:v2",
          auto_destroy: true,
          restart: { policy: "no" },
          guest: { cpu_kind: "shared", cpus: 2, memory_mb: 1024, gpu_kind: "a100-pcie-40gb", gpus: 1 },
          env: { MODE: "runner", FLAME_ENTRY: "/app/dist/main.js", FLAME_BUILD_ID: "abc123", FLAME_PARENT: "encoded" },
          init: { exec: ["/app/bin/runner"] },
          metadata: { team: "data", flame_pool: "Pool_1.x", flame_parent: "parent-9", flame_runner: "Pool_1.x-2-abc" },
          services: [{ protocol: "tcp", internal_port: 8080 }],
          stop_config: { signal: "SIGTERM", timeout: "1500ms" },
        },
      });
    } finally {
      if (savedBuild === undefined) delete process.env.FLAME_BUILD_ID;
      else process.env.FLAME_BUILD_ID = savedBuild;
    }
  });

  it("the fly-emulator command takes its options from arguments", () => {
    expect(parseFlyEmulatorArgs(["--port", "4280", "--app", "demo", "--no-rate-limits", "--quiet"])).toEqual({
      port: 4280,
      app: "demo",
      validate: true,
      rateLimits: false,
      echoOutput: false,
    });
    expect(() => parseFlyEmulatorArgs(["--port", "http"])).toThrow(/--port/);
    expect(() => parseFlyEmulatorArgs(["--bogus"])).toThrow();
  });

  it("listens on :: and has runners dial FLY_PRIVATE_IP over pinned TLS by default", () => {
    const saved = process.env.FLY_PRIVATE_IP;
    process.env.FLY_PRIVATE_IP = "fdaa:0:1:a7b:1:2:3:4";
    try {
      const address = new FlyBackend().controlPlane();
      expect(address.host).toBe("::");
      expect(address.port).toBe(0);
      expect(address.advertisedUrl(4000)).toBe("wss://[fdaa:0:1:a7b:1:2:3:4]:4000");
      expect(address.tls).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.FLY_PRIVATE_IP;
      else process.env.FLY_PRIVATE_IP = saved;
    }
    const elsewhere = new FlyBackend({ controlPlane: { host: "0.0.0.0", port: 4369, advertisedHost: "parent.internal" } }).controlPlane();
    expect([elsewhere.host, elsewhere.port, elsewhere.advertisedUrl(4369)]).toEqual(["0.0.0.0", 4369, "wss://parent.internal:4369"]);
    // In clear only when asked (a network you trust).
    const clear = new FlyBackend({ controlPlane: { advertisedHost: "parent.internal", tls: false } }).controlPlane();
    expect(clear.advertisedUrl(4369)).toBe("ws://parent.internal:4369");
  });

  it("reports missing settings on use, not on construction, and never retries them", async () => {
    const saved = { ...process.env };
    delete process.env.FLY_PRIVATE_IP;
    delete process.env.FLY_APP_NAME;
    try {
      const backend = new FlyBackend({ token: "t" });
      expect(() => backend.controlPlane()).toThrow(/FLY_PRIVATE_IP is not set/);
      const error = await backend.list().catch((caught: Error) => caught);
      expect(error).toBeInstanceOf(BackendError);
      expect(error).toMatchObject({ retryable: false, code: "FLAME_FLY_INVALID_CONFIGURATION" });
      expect((error as Error).message).toMatch(/FLY_APP_NAME/);
    } finally {
      process.env = saved;
    }
  });
});
