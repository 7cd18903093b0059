/**
 * A parent whose runner spawns fail for want of file descriptors (EMFILE): its
 * backend uses up every free descriptor right before the ProcessBackend spawns,
 * and frees them once the spawn has failed. Calls the pool once and prints what
 * the call rejected with as one JSON line, then stops the pool and exits 0; an
 * uncaught exception would instead end it with code 1 and no JSON.
 * Run it under a low descriptor limit (prlimit --nofile=256) so that using them
 * all up is quick. Usage: tsx spawn-exhausted-parent.ts
 */
import { closeSync, openSync } from "node:fs";
import type { Backend } from "../../src/index.js";
import { agentEntry } from "../../src/package-paths.js";
import { makePool } from "../fixtures/app.js";
import { testProcessBackend } from "./backends.js";

/** Opens /dev/null until the process is out of descriptors; returns them for closing. */
function exhaustFileDescriptors(): number[] {
  const held: number[] = [];
  for (;;) {
    try {
      held.push(openSync("/dev/null", "r"));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EMFILE") return held;
      for (const fd of held) closeSync(fd);
      throw error;
    }
  }
}

// The agent's path is looked up (reading package.json) once and cached: look it up while
// descriptors are free, so that the spawn itself is what runs out of them.
agentEntry();
const processes = testProcessBackend();
let provisions = 0;
const exhausted: Backend = {
  name: processes.name,
  provision: async (request) => {
    provisions += 1;
    const held = exhaustFileDescriptors();
    try {
      return await processes.provision(request);
    } finally {
      for (const fd of held) closeSync(fd);
    }
  },
  terminate: (runner) => processes.terminate(runner),
  list: (filter) => processes.list(filter),
};

// A short bootTimeout: EMFILE is retryable, so the call fails once no retry can serve it in time.
const { pool, echo } = makePool({ name: "exhausted", max: 1, bootTimeout: 1_500, backend: exhausted });
const error = (await pool.call(echo, ["never"]).then(
  () => undefined,
  (failure: unknown) => failure,
)) as (Error & { code?: string; retryable?: boolean; cause?: Error & { code?: string; retryable?: boolean } }) | undefined;
await pool.stop();
process.stdout.write(
  `${JSON.stringify({
    provisions,
    runnersLeft: (await processes.list()).length,
    error: error && {
      class: error.constructor.name,
      code: error.code,
      message: error.message,
      retryable: error.retryable,
      cause: error.cause && { class: error.cause.constructor.name, code: error.cause.code, retryable: error.cause.retryable, message: error.cause.message },
    },
  })}\n`,
);
