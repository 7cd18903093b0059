import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { Backend, ProvisionRequest } from "../../src/index.js";
import { decodeRunnerEnv, RUNNER_ENV_VAR, type RunnerBootInfo } from "../../src/protocol/runner-env.js";
import { makePool } from "../fixtures/app.js";
import { testProcessBackend } from "../support/backends.js";
import { waitFor } from "../support/processes.js";
import type { ShrinkInfo } from "../../src/index.js";

/** A ProcessBackend that keeps what each runner was given, as a snooper on a machine could. */
function recordingBackend(seen: RunnerBootInfo[]): Backend {
  const inner = testProcessBackend();
  return {
    name: "recording",
    provision: (request: ProvisionRequest) => {
      seen.push(decodeRunnerEnv(request.env[RUNNER_ENV_VAR]!));
      return inner.provision(request);
    },
    terminate: (runner) => inner.terminate(runner),
    list: (filter) => inner.list(filter),
  };
}

/** Tries a WebSocket upgrade; resolves with the HTTP status of a refusal, or "open". */
function tryConnect(url: string, headers: Record<string, string>): Promise<number | "open"> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, { headers });
    socket.once("open", () => {
      socket.terminate();
      resolve("open");
    });
    socket.once("unexpected-response", (_request, response) => {
      socket.terminate();
      resolve(response.statusCode ?? 0);
    });
    socket.once("error", () => resolve(0));
  });
}

const pools: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
});

describe("the control plane admits only the runners the parent is booting", () => {
  it("refuses connections without a token, with a wrong token, and with a used token, which ends that runner loudly", async () => {
    const seen: RunnerBootInfo[] = [];
    const warnings: { fields: Record<string, unknown>; message: string }[] = [];
    const shrinks: ShrinkInfo[] = [];
    const log = { debug: () => undefined, info: () => undefined, error: () => undefined, warn: (fields: Record<string, unknown>, message: string) => warnings.push({ fields, message }) };
    const { pool, add, whoami } = makePool({ name: "auth", max: 1, backend: recordingBackend(seen), log, onShrink: (info) => shrinks.push(info) });
    pools.push(pool);
    await expect(add(1, 2)).resolves.toBe(3);
    const [boot] = seen;
    expect(boot).toBeDefined();
    const url = boot!.parentUrl;

    expect(await tryConnect(url, {})).toBe(401);
    expect(await tryConnect(url, { authorization: "Bearer not-the-token", "x-flame-runner": boot!.runnerId })).toBe(401);
    const first = await whoami();
    // The token of a runner that already connected is worthless, even to someone who read it from its environment...
    expect(await tryConnect(url, { authorization: `Bearer ${boot!.token}`, "x-flame-runner": boot!.runnerId })).toBe(401);
    // ...and its second use is loud: two peers had it, so that runner's session is not trusted any more.
    await waitFor(() => shrinks.some((shrink) => shrink.reason === "token-reused"), "the runner whose token was reused to be ended");
    const theft = warnings.find((warning) => warning.message.startsWith("possible token theft"));
    expect(theft?.fields).toMatchObject({ runnerId: boot!.runnerId, peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    expect(JSON.stringify(warnings)).not.toContain(boot!.token);
    // A fresh runner takes over.
    await expect(add(2, 2)).resolves.toBe(4);
    expect((await whoami()).runnerId).not.toBe(first.runnerId);
  });

  it("a plain HTTP request gets 426, not a socket", async () => {
    const seen: RunnerBootInfo[] = [];
    const { pool, add } = makePool({ name: "auth-http", max: 1, backend: recordingBackend(seen) });
    pools.push(pool);
    await add(1, 1);
    const response = await fetch(seen[0]!.parentUrl.replace("ws://", "http://"));
    expect(response.status).toBe(426);
    await response.body?.cancel();
  });
});
