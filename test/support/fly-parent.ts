/**
 * A parent process for the "kill the parent" test: a pool on FlyBackend,
 * pointed at an emulator the test runs (FLY_EMULATOR_URL, FLY_EMULATOR_TOKEN,
 * FLY_EMULATOR_APP), that boots RUNNERS runners and prints one JSON line
 * `{"ready":<runners>}` once they are connected, then waits to be killed.
 */
import { FlyBackend } from "../../src/backends/fly.js";
import { makePool } from "../fixtures/app.js";
import { runnerCommand, TEST_IMAGE } from "./fly.js";

const runners = Number(process.env.RUNNERS ?? "2");
const backend = new FlyBackend({
  token: process.env.FLY_EMULATOR_TOKEN!,
  app: process.env.FLY_EMULATOR_APP!,
  baseUrl: process.env.FLY_EMULATOR_URL!,
  image: TEST_IMAGE,
  init: { cmd: runnerCommand() },
  controlPlane: { host: "127.0.0.1", advertisedHost: "127.0.0.1" },
});
const { pool, whoami } = makePool({
  name: "orphaned",
  min: runners,
  max: runners,
  backend,
  runnerConnectTimeout: 2_000,
  heartbeatInterval: 200,
  bootTimeout: 10_000,
});
await pool.start();
await whoami();
process.stdout.write(`${JSON.stringify({ ready: pool.stats().runners.ready })}\n`);
setInterval(() => undefined, 60_000);
