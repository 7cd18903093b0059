/**
 * A parent process for the "kill the parent" test: a pool on a FlyBackend
 * configured only by the environment, as on Fly (FLY_API_TOKEN, FLY_APP_NAME,
 * FLY_IMAGE_REF, FLY_PRIVATE_IP, plus FLY_API_HOSTNAME pointing at the
 * emulator the test runs). It boots RUNNERS runners, prints one JSON line
 * `{"ready":<runners>}` once they are connected, then waits to be killed.
 */
import { FlyBackend } from "../../src/backends/fly.js";
import { makePool } from "../fixtures/app.js";

const runners = Number(process.env.RUNNERS ?? "2");
const { pool, whoami } = makePool({
  name: "orphaned",
  min: runners,
  max: runners,
  backend: new FlyBackend(),
  runnerConnectTimeout: 2_000,
  heartbeatInterval: 200,
  bootTimeout: 10_000,
});
await pool.start();
await whoami();
process.stdout.write(`${JSON.stringify({ ready: pool.stats().runners.ready })}\n`);
setInterval(() => undefined, 60_000);
