import { spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { BackendError, BootError, type Backend, type ProvisionRequest } from "../../src/index.js";
import { decodeRunnerEnv, RUNNER_ENV_VAR } from "../../src/protocol/runner-env.js";
import { makePool } from "../fixtures/app.js";
import { fromCopy, testProcessBackend } from "../support/backends.js";

const pools: { stop(): Promise<void> }[] = [];
const cleanups: Array<() => void> = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
  for (const cleanup of cleanups.splice(0)) cleanup();
});

const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

function provisionRequest(runnerId: string): ProvisionRequest {
  return {
    runnerId,
    pool: "direct",
    parentId: "test-parent",
    env: {},
    entry: undefined,
    deadline: Date.now() + 10_000,
    signal: new AbortController().signal,
    log: silent,
  };
}

/** A file that exists but that nobody may execute: spawning it fails with EACCES. */
function notExecutable(): string {
  const directory = mkdtempSync(join(tmpdir(), "flame-process-test-"));
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  const path = join(directory, "node");
  writeFileSync(path, "not a program\n");
  chmodSync(path, 0o644);
  return path;
}

describe("ProcessBackend: a spawn that fails is a BackendError, never an uncaught exception", () => {
  it("a missing executable fails the pool's first call at once with a non-retryable BootError", async () => {
    let boots = 0;
    const { pool, echo } = makePool({
      name: "missing-node",
      max: 1,
      bootTimeout: 20_000,
      backend: testProcessBackend({ execPath: "/nonexistent/node" }),
      onGrowStart: () => {
        boots += 1;
      },
    });
    pools.push(pool);
    const startedAt = Date.now();
    const error = await echo("hello").catch((e: unknown) => e);
    // Well inside bootTimeout: the call was failed by the first boot, not by waiting out retries.
    expect(Date.now() - startedAt).toBeLessThan(5_000);
    expect(error).toBeInstanceOf(BootError);
    expect((error as BootError).code).toBe("FLAME_BOOT_FAILED");
    expect((error as BootError).retryable).toBe(false);
    expect((error as Error).message).toMatch(/could not spawn a runner process \(\/nonexistent\/node .*\): spawn \/nonexistent\/node ENOENT/);
    expect((error as Error).message).toMatch(/check the ProcessBackend execPath option/);
    const cause = (error as Error).cause as BackendError;
    expect(cause).toBeInstanceOf(BackendError);
    expect(cause.retryable).toBe(false);
    expect(boots).toBe(1);
    expect(await pool.backend.list()).toEqual([]);
  });

  it("provision() rejects with a BackendError naming the executable; list() and terminate() ignore the child that never was", async () => {
    const backend = testProcessBackend({ execPath: "/nonexistent/node" });
    const error = await backend.provision(provisionRequest("never-spawned")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as BackendError).code).toBe("FLAME_BACKEND");
    expect((error as BackendError).retryable).toBe(false);
    expect((error as Error).message).toContain("/nonexistent/node");
    expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe("ENOENT");
    expect(await backend.list()).toEqual([]);
    await expect(backend.terminate({ runnerId: "never-spawned", providerId: "unknown" })).resolves.toBeUndefined();
  });

  it("an executable that may not be run (EACCES) is not retryable either", async () => {
    const execPath = notExecutable();
    const error = await testProcessBackend({ execPath }).provision(provisionRequest("not-executable")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as BackendError).retryable).toBe(false);
    expect((error as Error).message).toContain(`spawn ${execPath} EACCES`);
  });

  it("a runner that did spawn is listed by its pid until it is terminated", async () => {
    const { pool, whoami } = makePool({ name: "spawned", max: 1, backend: testProcessBackend() });
    pools.push(pool);
    const { pid } = await whoami();
    expect(await pool.backend.list()).toEqual([expect.objectContaining({ providerId: String(pid), pool: "spawned" })]);
    await pool.stop();
    expect(await pool.backend.list()).toEqual([]);
  });

  it("out of file descriptors (EMFILE), the parent gets a retryable BootError and carries on", async () => {
    const script = new URL("../support/spawn-exhausted-parent.ts", import.meta.url).pathname;
    const node = [process.execPath, ...fromCopy(script)];
    // A low limit makes using up every descriptor quick; prlimit is util-linux, bash's ulimit the fallback.
    const [command, ...args] = spawnSync("prlimit", ["--version"]).status === 0
      ? ["prlimit", "--nofile=256:256", ...node]
      : ["bash", "-c", 'ulimit -n 256 && exec "$@"', "bash", ...node];
    const parent = spawn(command!, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    parent.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const lines: string[] = [];
    createInterface({ input: parent.stdout! }).on("line", (line) => lines.push(line));
    const exitCode = await new Promise<number | null>((resolve) => parent.once("close", resolve));

    expect({ exitCode, stderr }).toEqual({ exitCode: 0, stderr: "" });
    expect(lines).toHaveLength(1);
    const report = JSON.parse(lines[0]!) as {
      provisions: number;
      runnersLeft: number;
      error: { class: string; code: string; message: string; retryable: boolean; cause: { class: string; retryable: boolean; message: string } };
    };
    expect(report.error.class).toBe("BootError");
    expect(report.error.code).toBe("FLAME_BOOT_FAILED");
    expect(report.error.retryable).toBe(true);
    expect(report.error.message).toMatch(/could not spawn a runner process \(.*\): spawn \S+ EMFILE/);
    expect(report.error.cause).toMatchObject({ class: "BackendError", retryable: true });
    // Retryable: the pool tried again (with backoff) until no retry could serve the call within bootTimeout.
    expect(report.provisions).toBeGreaterThan(1);
    expect(report.runnersLeft).toBe(0);
  });
});

describe("ProcessBackend hands a runner its secret through a pipe", () => {
  it("the token is in no process's environment: not the runner's /proc/<pid>/environ, not its app's", async () => {
    const tokens: string[] = [];
    const inner = testProcessBackend();
    const backend: Backend = {
      name: "watched",
      provision: (request) => {
        tokens.push(decodeRunnerEnv(request.env[RUNNER_ENV_VAR]!).token);
        return inner.provision(request);
      },
      terminate: (runner) => inner.terminate(runner),
      list: (filter) => inner.list(filter),
    };
    const { pool, whoami, environment } = makePool({ name: "secret-pipe", max: 1, backend });
    try {
      const { pid } = await whoami();
      await expect(environment()).resolves.toEqual({ hasParentToken: false, isRunner: true });
      const environ = readFileSync(`/proc/${pid}/environ`, "latin1");
      expect(tokens).toHaveLength(1);
      expect(environ).not.toContain(tokens[0]!);
      expect(environ).not.toContain("FLAME_PARENT=");
    } finally {
      await pool.stop();
    }
  });
});
