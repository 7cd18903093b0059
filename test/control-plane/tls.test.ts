/**
 * The control plane over TLS, pinned to the parent: nobody between a runner
 * and its parent reads the traffic, and a peer posing as the parent with a
 * certificate of its own gets nothing (not even the upgrade request that
 * carries the token).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer as createTcpServer, connect, type Server as TcpServer, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import type { Backend, ProvisionRequest } from "../../src/index.js";
import { fingerprintOf, generateTlsIdentity } from "../../src/control-plane/certificate.js";
import { decodeRunnerEnv, encodeRunnerEnv, RUNNER_ENV_VAR, type RunnerBootInfo } from "../../src/protocol/runner-env.js";
import { makePool } from "../fixtures/app.js";
import { MIRROR_EXEC_ARGV, testProcessBackend } from "../support/backends.js";

const agentMain = fileURLToPath(new URL("../../src/runner-agent/main.ts", import.meta.url));
const appEntry = fileURLToPath(new URL("../fixtures/app.ts", import.meta.url));

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A TCP relay in front of `target`: forwards both ways and keeps every byte it saw. */
async function onPathRelay(target: { host: string; port: number }): Promise<{ port: number; seen: () => string }> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: TcpServer = createTcpServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => undefined);
      socket.on("close", () => sockets.delete(socket));
    }
    client.on("data", (data: Buffer) => {
      chunks.push(data);
      upstream.write(data);
    });
    upstream.on("data", (data: Buffer) => {
      chunks.push(data);
      client.write(data);
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => server.close(resolve));
  });
  return { port: (server.address() as { port: number }).port, seen: () => Buffer.concat(chunks).toString("latin1") };
}

/** A process backend whose runners dial the parent through `relayFor(parentUrl)`; records what each runner was given. */
function relayedBackend(tls: boolean, relayFor: (url: URL) => Promise<number>, given: RunnerBootInfo[]): Backend {
  const inner = testProcessBackend({ tls });
  return {
    name: "relayed",
    controlPlane: () => inner.controlPlane(),
    provision: async (request: ProvisionRequest) => {
      const boot = decodeRunnerEnv(request.env[RUNNER_ENV_VAR]!);
      given.push(boot);
      const url = new URL(boot.parentUrl);
      url.port = String(await relayFor(url));
      return inner.provision({ ...request, env: { ...request.env, [RUNNER_ENV_VAR]: encodeRunnerEnv({ ...boot, parentUrl: url.href.replace(/\/$/, "") }) } });
    },
    terminate: (runner) => inner.terminate(runner),
    list: (filter) => inner.list(filter),
  };
}

async function callThroughRelay(tls: boolean) {
  let relay: Awaited<ReturnType<typeof onPathRelay>> | undefined;
  const given: RunnerBootInfo[] = [];
  const backend = relayedBackend(tls, async (url) => {
    relay = await onPathRelay({ host: url.hostname, port: Number(url.port) });
    return relay.port;
  }, given);
  const { pool, echo } = makePool({ name: tls ? "relayed-tls" : "relayed-clear", max: 1, backend });
  cleanups.push(() => pool.stop());
  const results = [];
  for (let i = 0; i < 4; i++) results.push(await echo(`argument-marker-${i}`));
  await pool.stop();
  return { results, seen: relay!.seen(), boot: given[0]! };
}

describe("the control plane over TLS, pinned to the parent", () => {
  it("an on-path relay sees the token, arguments and results in clear; over TLS it sees none of them", async () => {
    const clear = await callThroughRelay(false);
    expect(clear.results).toEqual(["argument-marker-0", "argument-marker-1", "argument-marker-2", "argument-marker-3"]);
    // The control: without TLS the relay reads everything, so it would have seen it over TLS too.
    expect(clear.seen).toContain(clear.boot.token);
    expect(clear.seen).toContain("argument-marker-2");

    const secure = await callThroughRelay(true);
    expect(secure.boot.parentUrl).toMatch(/^wss:\/\//);
    expect(secure.boot.tls?.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(secure.results).toEqual(clear.results);
    expect(secure.seen.length).toBeGreaterThan(0);
    expect(secure.seen).not.toContain(secure.boot.token);
    expect(secure.seen).not.toContain("argument-marker");
    expect(secure.seen).not.toContain("Bearer");
  });

  it("a runner sent to an impostor with its own certificate sends it nothing and exits with 7", async () => {
    const parent = await generateTlsIdentity();
    const impostor = await generateTlsIdentity("flame-ts parent");
    const received: Buffer[] = [];
    const server = createTlsServer({ key: impostor.keyPem, cert: impostor.certificatePem }, (socket) => {
      socket.on("data", (data: Buffer) => received.push(data));
      socket.on("error", () => undefined);
    });
    server.on("tlsClientError", () => undefined);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const port = (server.address() as { port: number }).port;
    const token = "the-runner-token-that-must-not-leave";
    const runner = spawn(process.execPath, [...MIRROR_EXEC_ARGV, agentMain, appEntry], {
      env: {
        ...process.env,
        [RUNNER_ENV_VAR]: encodeRunnerEnv({
          parentUrl: `wss://127.0.0.1:${port}`,
          runnerId: "impostor-target-1",
          pool: "impostor",
          token,
          connectTimeout: 10_000,
          heartbeatInterval: 1_000,
          tls: { ca: parent.certificatePem, fingerprint256: fingerprintOf(parent.certificatePem) },
        }),
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    cleanups.push(() => runner.kill("SIGKILL"));
    let stderr = "";
    runner.stderr!.on("data", (chunk) => (stderr += chunk));
    const startedAt = Date.now();
    const [code] = await once(runner, "exit");
    expect(code).toBe(7);
    // At once, not after retrying until its 10 s failsafe.
    expect(Date.now() - startedAt).toBeLessThan(8_000);
    expect(stderr).toMatch(/is not this runner's parent .*its token was not sent/);
    expect(stderr).not.toContain(token);
    // Not one byte of application data reached the impostor: no upgrade request, no token.
    expect(Buffer.concat(received).length).toBe(0);
  });
});
