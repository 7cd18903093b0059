/**
 * Profiles the throughput case of flame-ts alone (no baselines), to find hot
 * spots: run the parent under --cpu-prof, and with `--runner` the runner too.
 *
 *   npm run build && node --cpu-prof --cpu-prof-dir=bench/results/profile --import tsx bench/profile.ts [--runner] [--tls] [--calls 200000]
 *   node --import tsx bench/tools/profile-summary.ts bench/results/profile/<file>.cpuprofile
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import type { Backend, ProvisionedRunner, ProvisionRequest } from "flame-ts";
import { loadFlame } from "./lib/flame.js";
import { closedLoopRate } from "./lib/measure.js";
import { IN_FLIGHT } from "./lib/warm-rig.js";

const { values } = parseArgs({
  options: {
    runner: { type: "boolean", default: false },
    calls: { type: "string", default: "200000" },
    sequential: { type: "boolean", default: false },
    tls: { type: "boolean", default: false },
  },
});
process.env.FLAME_BUILD_ID ??= "bench";
const profileDir = fileURLToPath(new URL("./results/profile/", import.meta.url));
const flame = await loadFlame();
const inner = new flame.flame.ProcessBackend({ execArgv: values.runner ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [], tls: values.tls });

/** Lets a profiled runner exit on the pool's shutdown message (writing its profile) before the SIGTERM. */
const backend: Backend = {
  name: "process-profiled",
  controlPlane: () => inner.controlPlane(),
  provision: (request: ProvisionRequest) => inner.provision(request),
  async terminate(runner: ProvisionedRunner) {
    await Promise.race([runner.exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    await inner.terminate(runner);
  },
  list: (filter) => inner.list(filter),
};

const { pool, noop } = flame.makePool({ name: "bench-profile", min: 1, max: 1, maxConcurrency: IN_FLIGHT, backend });
await pool.start();
const calls = Number(values.calls);
await closedLoopRate(10_000, IN_FLIGHT, () => noop());
const { rate, cpuPer10k } = await closedLoopRate(calls, values.sequential ? 1 : IN_FLIGHT, () => noop());
console.log(`${calls} calls, ${values.sequential ? 1 : IN_FLIGHT} in flight${values.tls ? " over TLS" : ""}: ${Math.round(rate)}/s, parent CPU ${cpuPer10k.toFixed(0)} ms per 10 000 calls`);
await pool.stop();
