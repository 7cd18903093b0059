/**
 * What a runner machine runs: `node node_modules/flame-ts/dist/runner-agent/main.js [entry]`
 * (or `flame-ts runner [entry]`). Kept to one line so a runner loads nothing it does not need.
 */
import { runAgent } from "./run.js";

await runAgent(process.argv[2]);
