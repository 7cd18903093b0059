/**
 * A parent process for tests that kill the parent: starts a pool with `min`
 * runners, prints their pids as one JSON line, then waits to be killed.
 * Usage: tsx parent-process.ts <min>
 */
import { makePool } from "../fixtures/app.js";
import { testProcessBackend } from "./backends.js";

const min = Number(process.argv[2] ?? 2);
const { pool, sleep } = makePool({ name: "orphaned", min, max: min, backend: testProcessBackend(), heartbeatInterval: 200 });
await pool.start();
const busy = await Promise.all(Array.from({ length: min }, () => pool.call(sleep, [1]).then((r) => r.pid)));
// Keep calls running on every runner when the parent dies.
for (let i = 0; i < min; i++) pool.cast(sleep, [60_000]);
process.stdout.write(`${JSON.stringify({ pids: [...new Set(busy)] })}\n`);
setInterval(() => undefined, 1_000);
