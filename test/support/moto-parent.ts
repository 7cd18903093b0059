/**
 * A parent process for the EC2 tests that must kill the parent: it builds a
 * pool of the fixture app on an Ec2Backend pointed at moto, boots `min`
 * runners, prints "ready", then asks for `thenMin` runners and waits to be
 * killed. Configured by the JSON in FLAME_TEST_PARENT (see ParentConfig).
 */
import { Ec2Backend } from "../../src/backends/ec2.js";
import { makePool } from "../fixtures/app.js";
import { MOTO_CREDENTIALS, MOTO_REGION } from "./moto.js";

export interface ParentConfig {
  endpoint: string;
  pool: string;
  min: number;
  thenMin: number;
  runnerConnectTimeout: number;
}

const config = JSON.parse(process.env.FLAME_TEST_PARENT ?? "{}") as ParentConfig;
const backend = new Ec2Backend({
  region: MOTO_REGION,
  endpoint: config.endpoint,
  credentials: MOTO_CREDENTIALS,
  runnerImage: "registry.example.com/flame-test:1",
  // Runners run on this host, not at the private IPs moto gives their instances.
    controlPlane: { host: "127.0.0.1", port: 0, advertisedHost: "127.0.0.1", checkRunnerAddress: false },
});
const { pool } = makePool({
  name: config.pool,
  max: Math.max(config.min, config.thenMin, 1),
  min: config.min,
  backend,
  bootTimeout: 60_000,
  runnerConnectTimeout: config.runnerConnectTimeout,
});
await pool.start();
process.stdout.write("ready\n");
if (config.thenMin > config.min) void pool.resize({ min: config.thenMin }).catch(() => undefined);
// Keep the process up until the test kills it.
setInterval(() => undefined, 60_000);
