import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { Backend, ProvisionRequest } from "../../src/index.js";
import { decodeRunnerEnv, RUNNER_ENV_VAR, type RunnerBootInfo } from "../../src/protocol/runner-env.js";
import { makePool } from "../fixtures/app.js";
import { testProcessBackend } from "../support/backends.js";

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
  it("refuses connections without a token, with a wrong token, and with a used token", async () => {
    const seen: RunnerBootInfo[] = [];
    const { pool, add } = makePool({ name: "auth", max: 1, backend: recordingBackend(seen) });
    pools.push(pool);
    await expect(add(1, 2)).resolves.toBe(3);
    const [boot] = seen;
    expect(boot).toBeDefined();
    const url = boot!.parentUrl;

    expect(await tryConnect(url, {})).toBe(401);
    expect(await tryConnect(url, { authorization: "Bearer not-the-token", "x-flame-runner": boot!.runnerId })).toBe(401);
    // The token of a runner that already connected is worthless, even to someone who read it from its environment.
    expect(await tryConnect(url, { authorization: `Bearer ${boot!.token}`, "x-flame-runner": boot!.runnerId })).toBe(401);
    // The real runner is unaffected.
    await expect(add(2, 2)).resolves.toBe(4);
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
