/**
 * The local-parallelism pools a Node user would otherwise pick, running the
 * same functions as the flame-ts benchmark app. Both start their workers
 * without the parent's TypeScript loader, like the flame-ts runners.
 */
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import workerpool from "workerpool";

const PISCINA_WORKER = fileURLToPath(new URL("../fixtures/piscina-worker.mjs", import.meta.url));
const WORKERPOOL_WORKER = fileURLToPath(new URL("../fixtures/workerpool-worker.mjs", import.meta.url));

/** piscina with `threads` worker threads (created now, like a pool at min = max). */
export function startPiscina(threads: number): Piscina {
  return new Piscina({ filename: PISCINA_WORKER, minThreads: threads, maxThreads: threads, execArgv: [], idleTimeout: 60_000 });
}

/** workerpool with one child process (`workerType: "process"`). */
export function startWorkerpool(): workerpool.Pool {
  return workerpool.pool(WORKERPOOL_WORKER, { workerType: "process", maxWorkers: 1, forkOpts: { execArgv: [] } });
}
