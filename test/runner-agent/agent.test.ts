import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { encodeRunnerEnv } from "../../src/protocol/runner-env.js";
import { makePool } from "../fixtures/app.js";
import { MIRROR_EXEC_ARGV, testProcessBackend } from "../support/backends.js";
import { waitFor } from "../support/processes.js";

const agentMain = fileURLToPath(new URL("../../src/runner-agent/main.ts", import.meta.url));
const appEntry = fileURLToPath(new URL("../fixtures/app.ts", import.meta.url));

async function unusedPort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const pools: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
});

describe("runner agent", () => {
  it("exits on its own when it cannot reach its parent within the failsafe window", async () => {
    const port = await unusedPort();
    const env = encodeRunnerEnv({
      parentUrl: `ws://127.0.0.1:${port}`,
      runnerId: "lonely-1",
      pool: "lonely",
      token: "t",
      connectTimeout: 600,
      heartbeatInterval: 1_000,
    });
    const startedAt = Date.now();
    const agent = spawn(process.execPath, [...MIRROR_EXEC_ARGV, agentMain, appEntry], {
      env: { ...process.env, FLAME_PARENT: env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    agent.stderr!.on("data", (chunk) => (stderr += chunk));
    const [code] = await once(agent, "exit");
    expect(code).toBe(5);
    expect(Date.now() - startedAt).toBeLessThan(5_000);
    expect(stderr).toMatch(/could not (reach|connect to) the parent/);
    expect(stderr).not.toContain(env);
  });

  it("refuses to start without FLAME_PARENT, saying who starts it", async () => {
    const agent = spawn(process.execPath, [...MIRROR_EXEC_ARGV, agentMain], { env: { ...process.env, FLAME_PARENT: "" }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    agent.stderr!.on("data", (chunk) => (stderr += chunk));
    const [code] = await once(agent, "exit");
    expect(code).toBe(2);
    expect(stderr).toMatch(/started by a flame-ts backend/);
  });

  it("hides the runner token from app code and forwards console output to the parent's log, tagged", async () => {
    const entries: { level: string; fields: Record<string, unknown>; message: string }[] = [];
    const capture = (level: string) => (fields: Record<string, unknown>, message: string) => entries.push({ level, fields, message });
    const log = { debug: capture("debug"), info: capture("info"), warn: capture("warn"), error: capture("error") };
    const { pool, environment, shout } = makePool({ name: "console", max: 1, backend: testProcessBackend(), log });
    pools.push(pool);
    await expect(environment()).resolves.toEqual({ hasParentToken: false, isRunner: true });
    await shout("hello from the runner");
    await waitFor(() => entries.some((e) => e.message === "error: hello from the runner"), "the runner's output in the parent's log");
    const info = entries.find((e) => e.message === "hello from the runner")!;
    expect(info.level).toBe("info");
    expect(info.fields).toMatchObject({ pool: "console", runnerId: expect.stringMatching(/^console-/) });
    expect(entries.find((e) => e.message.startsWith("error:"))!.level).toBe("error");
  });
});
