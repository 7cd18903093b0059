import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FlyEmulator } from "../../src/emulators/fly/emulator.js";
import { copyOf, fromCopy } from "../support/backends.js";
import { liveMachines, startTestEmulator, testFlyBackend, TEST_IMAGE } from "../support/fly.js";
import { keepProcessesAcrossTests } from "../support/no-leftover-processes.js";
import { waitFor } from "../support/processes.js";

keepProcessesAcrossTests();

const cli = fileURLToPath(new URL("../../src/cli.ts", import.meta.url));
// The CLI runs from the suite's JavaScript copy, so the app it inspects is the copy's too (one flame-ts in the process).
const cliAppEntry = copyOf(fileURLToPath(new URL("../fixtures/cli-app.ts", import.meta.url)));

/** Runs the flame-ts command; resolves with its exit code and output. */
async function flameTs(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...fromCopy(cli), ...args], {
      env: { ...process.env, ...env },
      timeout: 20_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

let emulator: FlyEmulator;
let flyEnv: Record<string, string>;

beforeAll(async () => {
  emulator = await startTestEmulator();
  flyEnv = {
    FLY_API_HOSTNAME: emulator.url,
    FLY_API_TOKEN: emulator.token,
    FLY_APP_NAME: emulator.app,
    FLY_IMAGE_REF: TEST_IMAGE,
    FLY_PRIVATE_IP: "127.0.0.1",
  };
});
afterAll(() => emulator.close());

/** Machines a crashed parent left behind: running, never connecting, their parent gone. */
async function leaveOrphans(parentId: string, pool: string, count: number): Promise<void> {
  const backend = testFlyBackend(emulator, { init: { cmd: [process.execPath, "-e", "setInterval(() => {}, 1000)"] } });
  for (let i = 0; i < count; i++) {
    await backend.provision({
      runnerId: `${pool}-${parentId}-${i}`,
      pool,
      parentId,
      env: {},
      entry: undefined,
      deadline: Date.now() + 10_000,
      signal: new AbortController().signal,
      log: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    });
  }
}

describe("the flame-ts command", () => {
  it("prints its usage and rejects unknown commands and options", async () => {
    const help = await flameTs(["help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/reap .*\n.*doctor/s);
    const unknown = await flameTs(["explode"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "explode"/);
    const badOption = await flameTs(["reap", "--backend", "fly", "--frobnicate"]);
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toMatch(/--frobnicate/);
    expect((await flameTs(["reap", "--backend", "fly", "--entry", "x.js"])).stderr).toMatch(/exactly one of --entry and --backend/);
  });

  it("reap lists a crashed parent's runners in a dry run, and destroys only them with --yes --parent", async () => {
    await leaveOrphans("dead-parent", "thumbs", 2);
    await leaveOrphans("live-parent", "thumbs", 1);
    await waitFor(() => liveMachines(emulator).every((machine) => machine.state === "started"), "the orphans to start");

    const dryRun = await flameTs(["reap", "--backend", "fly", "--pool", "thumbs"], flyEnv);
    expect(dryRun.code).toBe(0);
    expect(dryRun.stdout).toMatch(/fly backend, pool "thumbs": 3 runner\(s\)/);
    expect(dryRun.stdout).toMatch(/dry run: nothing was destroyed/);
    expect(liveMachines(emulator)).toHaveLength(3);

    const reaped = await flameTs(["reap", "--backend", "fly", "--pool", "thumbs", "--parent", "dead-parent", "--yes"], flyEnv);
    expect(reaped.code).toBe(0);
    expect(reaped.stdout.match(/destroyed/g)).toHaveLength(2);
    expect(liveMachines(emulator).map((machine) => machine.config.metadata.flame_parent)).toEqual(["live-parent"]);
    expect(reaped.stdout + reaped.stderr).not.toContain(emulator.token);

    await flameTs(["reap", "--backend", "fly", "--yes"], flyEnv);
    expect(liveMachines(emulator)).toEqual([]);
  });

  it("doctor passes for a working Fly configuration and names what is wrong otherwise", async () => {
    const good = await flameTs(["doctor", "--backend", "fly"], flyEnv);
    expect(good.stdout).toMatch(/ok {3}credentials and permissions/);
    expect(good.stdout).toMatch(/ok {3}runner URL: wss:\/\/\[?127\.0\.0\.1\]?:\d+\/? is an address of this machine/);
    expect(good.stdout).toMatch(/ok {3}reachable/);
    expect(good.code).toBe(0);

    const badToken = await flameTs(["doctor", "--backend", "fly"], { ...flyEnv, FLY_API_TOKEN: "wrong-token" });
    expect(badToken.code).toBe(1);
    expect(badToken.stdout).toMatch(/FAIL credentials and permissions: .*401/);
    expect(badToken.stdout).not.toContain("wrong-token");

    const elsewhere = await flameTs(["doctor", "--backend", "fly"], { ...flyEnv, FLY_PRIVATE_IP: "192.0.2.10" });
    expect(elsewhere.code).toBe(1);
    expect(elsewhere.stdout).toMatch(/FAIL runner URL: .*192\.0\.2\.10.*not an address of this machine/);
  });

  it("doctor --entry checks the pools an app defines, with their own backends", async () => {
    const result = await flameTs(["doctor", "--entry", cliAppEntry]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/process backend, pool "cli-app"/);
    expect(result.stdout).toMatch(/all checks passed/);
  });
});
