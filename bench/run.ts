/**
 * flame-ts benchmarks: flame-ts against the floor (raw ws over loopback,
 * spawning node) and against its peers (piscina, workerpool, one process),
 * measured side by side in one run, interleaved, as ratios; and a runner's
 * memory by its thread count, against a 1-thread runner.
 *
 *   npm run bench                          # full mode: a few minutes
 *   npm run bench -- --quick               # under a minute (CI runs it)
 *   npm run bench -- --json results.json   # also write the figures as JSON
 *   npm run bench -- --case throughput     # only some cases (comma-separated ids)
 *
 * The table goes to stdout, progress to stderr. This script may run under tsx;
 * what it measures is the built package (dist/), and runners start with plain
 * `node` like production runners.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { coldStartCase } from "./cases/cold-start.js";
import { elasticCpuCase } from "./cases/elastic-cpu.js";
import { largePayloadCase } from "./cases/large-payload.js";
import { parentCpuCase } from "./cases/parent-cpu.js";
import { parentMemoryCase } from "./cases/parent-memory.js";
import { roundTripCase } from "./cases/round-trip.js";
import { routingCase } from "./cases/routing.js";
import { runnerMemoryCase } from "./cases/runner-memory.js";
import { throughputCase, throughputTlsCase } from "./cases/throughput.js";
import type { BenchContext } from "./lib/context.js";
import { loadFlame } from "./lib/flame.js";
import { formatTable, machineMeta, type CaseResult, type RunMeta, type SkippedCase } from "./lib/report.js";
import { startWarmRig } from "./lib/warm-rig.js";

const CASES = ["round-trip", "throughput", "large-payload", "cold-start", "elastic-cpu", "parent-memory", "runner-memory", "routing"] as const;

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "string" },
    case: { type: "string" },
  },
});
const selected = new Set(values.case ? values.case.split(",").map((name) => name.trim()) : CASES);
for (const name of selected) {
  if (!(CASES as readonly string[]).includes(name)) throw new Error(`unknown case "${name}"; cases: ${CASES.join(", ")}`);
}

// Parent and runners must agree on the app version; runners inherit this (Fly runners get it through the backend's env).
process.env.FLAME_BUILD_ID ??= "bench";
// Every process the benchmark starts inherits this environment. A CA bundle in NODE_EXTRA_CA_CERTS is parsed at
// every node start (about 30 ms here), which would pad both sides of the cold start; production runners rarely set it.
const droppedCaBundle = process.env.NODE_EXTRA_CA_CERTS !== undefined;
delete process.env.NODE_EXTRA_CA_CERTS;

const startedAt = performance.now();
const context: BenchContext = {
  flame: await loadFlame(),
  quick: values.quick,
  progress: (message) => process.stderr.write(`[bench ${((performance.now() - startedAt) / 1000).toFixed(1)}s] ${message}\n`),
};

if (droppedCaBundle) context.progress("NODE_EXTRA_CA_CERTS is unset for the processes the benchmark starts (it slows every node start)");

const results: CaseResult[] = [];
const skipped: SkippedCase[] = [];
let runnerExecArgv: string[] = [];

if (selected.has("round-trip") || selected.has("throughput") || selected.has("large-payload")) {
  const rig = await startWarmRig(context);
  runnerExecArgv = rig.runnerExecArgv;
  try {
    const roundTrip = selected.has("round-trip") ? await roundTripCase(context, rig) : undefined;
    if (roundTrip) results.push(roundTrip.result);
    const throughput = selected.has("throughput") ? await throughputCase(context, rig) : undefined;
    if (throughput) results.push(throughput.result);
    if (selected.has("large-payload")) results.push(await largePayloadCase(context, rig));
    if (roundTrip && throughput) results.push(parentCpuCase(roundTrip.samples, throughput.samples));
  } finally {
    await rig.close();
  }
}
// The same warm cases over TLS (flame-ts with `tls: true` against the echo over wss), after the clear ones.
if (selected.has("round-trip") || selected.has("throughput")) {
  const rig = await startWarmRig(context, { tls: true });
  try {
    if (selected.has("round-trip")) results.push((await roundTripCase(context, rig)).result);
    if (selected.has("throughput")) results.push(await throughputTlsCase(context, rig));
  } finally {
    await rig.close();
  }
}
if (selected.has("cold-start")) {
  const coldStart = await coldStartCase(context);
  results.push(...coldStart.results);
  skipped.push(...coldStart.skipped);
}
if (selected.has("elastic-cpu")) results.push(...(await elasticCpuCase(context)));
if (selected.has("parent-memory")) results.push(await parentMemoryCase(context));
if (selected.has("runner-memory")) {
  const runnerMemory = await runnerMemoryCase(context);
  results.push(...runnerMemory.results);
  skipped.push(...runnerMemory.skipped);
}

if (selected.has("routing")) results.push(await routingCase(context));

// Cases print in the order.
results.sort((a, b) => a.title.localeCompare(b.title, "en", { numeric: true }));
const meta: RunMeta = {
  ...machineMeta(),
  mode: values.quick ? "quick" : "full",
  durationSeconds: Math.round((performance.now() - startedAt) / 100) / 10,
  runnerExecArgv,
};
process.stdout.write(`${formatTable(results, meta)}\n`);
for (const skip of skipped) process.stdout.write(`\nSkipped ${skip.id}: ${skip.reason}\n`);
const missed = results.flatMap((result) => result.comparisons.filter((c) => c.target && !c.target.met).map((c) => `${result.title} vs ${c.baseline}`));
if (missed.length > 0) process.stdout.write(`\nTargets missed: ${missed.join("; ")}\n`);

if (values.json) {
  const path = resolve(values.json);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify({ meta, results, skipped }, null, 2)}\n`);
  context.progress(`wrote ${path}`);
}
context.progress(`done in ${meta.durationSeconds} s`);
