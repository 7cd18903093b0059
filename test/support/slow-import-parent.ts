/**
 * A parent whose runner takes long to import its entry (test/fixtures/slow-app.ts):
 * it starts booting, then waits to be killed.
 */
import { pool } from "../fixtures/slow-app.js";

void pool.start().catch(() => undefined);
setInterval(() => undefined, 1_000);
