import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import { decodeRunnerMessage } from "../../src/protocol/codec.js";
import { encodeRunnerEnv } from "../../src/protocol/runner-env.js";
import { fromCopy, MIRROR_EXEC_ARGV } from "../support/backends.js";
import { hasEstablishedTcpConnection, isAlive, waitFor } from "../support/processes.js";

const agentMain = fileURLToPath(new URL("../../src/runner-agent/main.ts", import.meta.url));
const appEntry = fileURLToPath(new URL("../fixtures/app.ts", import.meta.url));
const slowParent = fileURLToPath(new URL("../support/slow-import-parent.ts", import.meta.url));

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

describe("a runner always has a way out when its parent is gone", () => {
  it("exits when the parent is SIGKILLed while the runner is still importing a slow entry module", async () => {
    const directory = mkdtempSync(join(tmpdir(), "flame-slow-"));
    const marker = join(directory, "importing");
    cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
    const parent = spawn(process.execPath, [...fromCopy(slowParent)], {
      env: { ...process.env, FLAME_TEST_MARKER: marker, FLAME_TEST_IMPORT_MS: "6000" },
      stdio: ["ignore", "ignore", "inherit"],
    });
    cleanups.push(() => parent.kill("SIGKILL"));
    await waitFor(() => existsSync(marker) && readFileSync(marker, "utf8") !== "", "the runner to be importing its entry", 15_000);
    const runnerPid = Number(readFileSync(marker, "utf8"));
    cleanups.push(() => isAlive(runnerPid) && process.kill(runnerPid, "SIGKILL"));
    // Connected to its parent (the failsafe is over), still importing for ~6 s.
    await waitFor(() => hasEstablishedTcpConnection(runnerPid), "the runner to connect to its parent");

    const killedAt = Date.now();
    parent.kill("SIGKILL");
    await waitFor(() => !isAlive(runnerPid), "the runner to exit after its parent died", 10_000);
    // Well before its import ends: the closed connection ends it, not the import.
    expect(Date.now() - killedAt).toBeLessThan(3_000);
  });

  it("exits when a parent accepts its connection but never welcomes it nor pings", async () => {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await once(server, "listening");
    cleanups.push(() => server.close());
    const helloSeen = new Promise<WebSocket>((resolve) =>
      server.on("connection", (socket) => socket.once("message", (data: Buffer) => {
        expect(decodeRunnerMessage(data).type).toBe("hello");
        resolve(socket);
      })),
    );
    const { port } = server.address() as { port: number };
    const agent = spawn(process.execPath, [...MIRROR_EXEC_ARGV, agentMain, appEntry], {
      env: {
        ...process.env,
        FLAME_PARENT: encodeRunnerEnv({
          parentUrl: `ws://127.0.0.1:${port}`,
          runnerId: "silent-parent-1",
          pool: "silent",
          token: "t",
          connectTimeout: 10_000,
          heartbeatInterval: 200,
        }),
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    cleanups.push(() => agent.kill("SIGKILL"));
    let stderr = "";
    agent.stderr!.on("data", (chunk) => (stderr += chunk));
    await helloSeen;
    const saidHelloAt = Date.now();
    const [code] = await once(agent, "exit");
    // Three silent heartbeat intervals (600 ms), far less than the 10 s failsafe.
    expect(Date.now() - saidHelloAt).toBeLessThan(5_000);
    expect(code).toBe(0);
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});
