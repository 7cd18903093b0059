/**
 * A runner process on SIGTERM: with an SDK registered it exports what the SDK
 * holds first, then ends by the signal as before; with nothing registered it
 * ends by the signal at once. The runner dials a port nobody listens on, so
 * only the signal can end it before its failsafe.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { encodeRunnerEnv } from "../../src/protocol/runner-env.js";
import { MIRROR_EXEC_ARGV } from "../support/backends.js";
import type { SpanRecord } from "../fixtures/traced-app.js";

const agentMain = fileURLToPath(new URL("../../src/runner-agent/main.ts", import.meta.url));
const entry = fileURLToPath(new URL("../fixtures/sigterm-app.ts", import.meta.url));
const traceId = "0af7651916cd43dd8448eb211c80319c";
const bootSpanId = "b7ad6b7169203331";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** Starts a runner with `env`, waits until its entry has loaded, sends SIGTERM, and resolves with how it ended and how long that took. */
async function terminateLoadedRunner(env: Record<string, string>) {
  const runner = spawn(process.execPath, [...MIRROR_EXEC_ARGV, agentMain, entry], {
    env: {
      ...process.env,
      ...env,
      FLAME_PARENT: encodeRunnerEnv({
        parentUrl: "ws://127.0.0.1:1",
        runnerId: "sigterm-1",
        pool: "sigterm",
        token: "t",
        connectTimeout: 20_000,
        heartbeatInterval: 1_000,
        traceContext: { traceparent: `00-${traceId}-${bootSpanId}-01` },
      }),
    },
    stdio: ["ignore", "pipe", "ignore"],
  });
  cleanups.push(() => runner.exitCode === null && runner.signalCode === null && runner.kill("SIGKILL"));
  const exited = once(runner, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  let output = "";
  await new Promise<void>((resolve, reject) => {
    runner.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("loaded\n")) resolve();
    });
    void exited.then(() => reject(new Error(`the runner exited before its entry loaded: ${output}`)));
  });
  const signalledAt = Date.now();
  runner.kill("SIGTERM");
  const [code, signal] = await exited;
  return { code, signal, took: Date.now() - signalledAt };
}

describe("a runner on SIGTERM", () => {
  it("with an SDK registered, exports what the SDK holds (the entry's load span), then ends by the signal", async () => {
    const spansFile = join(tmpdir(), `flame-ts-sigterm-${process.pid}-${Date.now()}.jsonl`);
    cleanups.push(() => rmSync(spansFile, { force: true }));
    const ended = await terminateLoadedRunner({ FLAME_TEST_SPANS_FILE: spansFile, FLAME_TEST_EXPORT_DELAY: "300" });
    expect(ended).toMatchObject({ code: null, signal: "SIGTERM" });
    expect(ended.took).toBeGreaterThanOrEqual(300);
    expect(existsSync(spansFile), "the batch was flushed").toBe(true);
    const records = readFileSync(spansFile, "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line) as SpanRecord);
    const load = records.find((record) => record.name === "flame.runner.load_entry");
    expect(load).toMatchObject({ traceId, parentSpanId: bootSpanId, attributes: { "flame.pool": "sigterm", "flame.runner.id": "sigterm-1" } });
  });

  it("with nothing registered, ends by the signal at once, as without the handler", async () => {
    const ended = await terminateLoadedRunner({ FLAME_TEST_RUNNER_SDK: "off" });
    expect(ended).toMatchObject({ code: null, signal: "SIGTERM" });
    // A handler that kept the signal would leave the runner waiting for its failsafe (20 s).
    expect(ended.took).toBeLessThan(1_000);
  });
});
