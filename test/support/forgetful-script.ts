/**
 * A script that uses a pool and forgets to stop it: it must exit on its own
 * once its work is done. Usage: tsx forgetful-script.ts <min> <process|local>
 * Prints the runner's pid (process backend) as one JSON line.
 */
import { LocalBackend } from "../../src/index.js";
import { makePool } from "../fixtures/app.js";
import { testProcessBackend } from "./backends.js";

const min = Number(process.argv[2] ?? 0);
const backend = process.argv[3] === "local" ? new LocalBackend() : testProcessBackend();
const { pool, whoami } = makePool({ name: "forgetful", min, max: 1, backend });
await pool.start();
const { pid } = await whoami();
process.stdout.write(`${JSON.stringify({ pid })}\n`);
