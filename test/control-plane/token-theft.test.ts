/**
 * A runner's one-time token read by someone else (from a machine's
 * environment, user data or a Secret) and used first, from another address:
 * when the backend says where its runner is (ProvisionedRunner.address),
 * the thief is refused and logged whether it comes before or after the
 * provider's answer, and every result a caller gets comes from a real runner.
 * The thief dials from 127.0.0.2 (all of 127/8 is loopback on Linux), the
 * real runner from 127.0.0.1.
 */
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { Backend, ProvisionedRunner, ProvisionRequest } from "../../src/index.js";
import { decodeRunnerEnv, RUNNER_ENV_VAR, type RunnerBootInfo } from "../../src/protocol/runner-env.js";
import { canonicalAddress } from "../../src/control-plane/listener.js";
import { makePool } from "../fixtures/app.js";
import { testProcessBackend } from "../support/backends.js";
import { waitFor } from "../support/processes.js";

/**
 * A ProcessBackend whose runners are at 127.0.0.1 and whose provider is slow
 * in a controlled way: the runner process starts only once `release()` is
 * called, and the provider's answer (with the address) comes either at once
 * or after the release.
 */
function gatedBackend(answer: "before-runner-starts" | "after-release") {
  const inner = testProcessBackend();
  const stolen: RunnerBootInfo[] = [];
  const started = new Map<string, Promise<ProvisionedRunner>>();
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const backend: Backend = {
    name: "gated",
    provision: async (request: ProvisionRequest) => {
      stolen.push(decodeRunnerEnv(request.env[RUNNER_ENV_VAR]!));
      const runner = gate.then(() => inner.provision(request));
      started.set(request.runnerId, runner);
      if (answer === "after-release") await runner;
      return { runnerId: request.runnerId, providerId: request.runnerId, address: "127.0.0.1" };
    },
    terminate: async (runner) => {
      const real = await started.get(runner.runnerId)?.catch(() => undefined);
      if (real) await inner.terminate(real);
    },
    list: (filter) => inner.list(filter),
  };
  return { backend, stolen, release: () => release() };
}

interface Thief {
  outcome: Promise<number | "open">;
  /** Binary frames the parent sent the thief (a welcome, a call). */
  received: Buffer[];
  closed: Promise<void>;
}

/** Connects from 127.0.0.2 with a stolen token and stays connected, recording whatever the parent sends. */
function connectAsThief(boot: RunnerBootInfo): Thief {
  const received: Buffer[] = [];
  const socket = new WebSocket(boot.parentUrl, { headers: { authorization: `Bearer ${boot.token}`, "x-flame-runner": boot.runnerId }, localAddress: "127.0.0.2" });
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.on("message", (data: Buffer) => received.push(data));
  const outcome = new Promise<number | "open">((resolve) => {
    socket.once("open", () => resolve("open"));
    socket.once("unexpected-response", (_request, response) => {
      resolve(response.statusCode ?? 0);
      socket.terminate();
    });
    socket.once("error", () => resolve(0));
  });
  return { outcome, received, closed };
}

function recordingLog() {
  const warnings: { fields: Record<string, unknown>; message: string }[] = [];
  const log = { debug: () => undefined, info: () => undefined, error: () => undefined, warn: (fields: Record<string, unknown>, message: string) => warnings.push({ fields, message }) };
  return { warnings, log };
}

const pools: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
});

describe("a stolen token used first, from another address than the runner's machine", () => {
  it("is refused before the token is spent once the backend said where the runner is; the real runner then gets in", async () => {
    const { backend, stolen, release } = gatedBackend("before-runner-starts");
    const { warnings, log } = recordingLog();
    const { pool, add, whoami } = makePool({ name: "theft-known", max: 1, backend, log });
    pools.push(pool);
    const sum = add(1, 2);
    await waitFor(() => stolen.length === 1, "the runner's boot to begin");
    // The provider has answered (with the address): the pool applies it before this turn ends.
    await new Promise((resolve) => setImmediate(resolve));
    const thief = connectAsThief(stolen[0]!);
    expect(await thief.outcome).toBe(401);
    const theft = warnings.find((warning) => warning.message.startsWith("possible token theft"));
    expect(theft?.fields).toMatchObject({ runnerId: stolen[0]!.runnerId, peer: expect.stringMatching(/^127\.0\.0\.2:\d+$/), runnerAddress: "127.0.0.1" });
    expect(JSON.stringify(warnings)).not.toContain(stolen[0]!.token);
    release();
    await expect(sum).resolves.toBe(3);
    expect((await whoami()).runnerId).toBe(stolen[0]!.runnerId);
  });

  it("that connects before the provider's answer is sent nothing, ended with a warning, and the runner is replaced", async () => {
    const { backend, stolen, release } = gatedBackend("after-release");
    const { warnings, log } = recordingLog();
    const { pool, add, whoami } = makePool({ name: "theft-early", max: 1, backend, log });
    pools.push(pool);
    const sum = add(2, 3);
    await waitFor(() => stolen.length === 1, "the runner's boot to begin");
    const thief = connectAsThief(stolen[0]!);
    // Before the provider answers, nobody knows the runner's address: the connection is accepted, but not welcomed.
    expect(await thief.outcome).toBe("open");
    release();
    await thief.closed;
    expect(thief.received, "frames the parent sent the thief").toEqual([]);
    const theft = warnings.find((warning) => warning.message.startsWith("possible token theft"));
    expect(theft?.fields).toMatchObject({ runnerId: stolen[0]!.runnerId, peer: "127.0.0.2", runnerAddress: "127.0.0.1" });
    // Every result comes from a real runner: a second boot, whose token nobody used first.
    await expect(sum).resolves.toBe(5);
    expect(stolen.length).toBe(2);
    expect((await whoami()).runnerId).toBe(stolen[1]!.runnerId);
  });
});

describe("canonicalAddress", () => {
  it("spells one address one way", () => {
    expect(canonicalAddress("::ffff:10.0.0.5")).toBe("10.0.0.5");
    expect(canonicalAddress("10.0.0.5")).toBe("10.0.0.5");
    expect(canonicalAddress("FDAA:0:0:0:0:0:0:2")).toBe("fdaa::2");
    expect(canonicalAddress("[fdaa::2]")).toBe("fdaa::2");
  });
});
