/**
 * Case 6a, parent memory per idle connected runner: a fresh parent process
 * (node --expose-gc) grows a pool from 1 to 1 + N runners, against the same
 * process holding 1 + N raw ws connections to spawned peers. Both readings
 * are taken after GC; the per-runner figure is the growth divided by N.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import type { BenchContext } from "../lib/context.js";
import { interleave } from "../lib/measure.js";
import { compare, type CaseResult } from "../lib/report.js";

const SCRIPT = fileURLToPath(new URL("../fixtures/parent-memory.mjs", import.meta.url));
const KIB = 1024;

interface Reading {
  rss: number;
  heapUsed: number;
  external: number;
}

interface MemoryRun {
  count: number;
  before: Reading;
  after: Reading;
  ready: number;
}

interface PerRunner {
  /** heapUsed + external growth per connection, KiB. */
  js: number;
  /** RSS growth per connection, KiB. */
  rss: number;
}

async function measure(mode: "flame" | "ws", count: number): Promise<PerRunner> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--expose-gc", SCRIPT, mode, String(count)], { timeout: 120_000 });
  const run = JSON.parse(stdout.trim().split("\n").at(-1)!) as MemoryRun;
  if (run.ready !== count + 1) throw new Error(`${mode}: expected ${count + 1} connected runners, had ${run.ready}`);
  const js = (reading: Reading) => reading.heapUsed + reading.external;
  return { js: (js(run.after) - js(run.before)) / count / KIB, rss: (run.after.rss - run.before.rss) / count / KIB };
}

export async function parentMemoryCase(context: BenchContext): Promise<CaseResult> {
  const count = 32;
  const repetitions = context.quick ? 1 : 3;
  context.progress(`parent memory: ${repetitions} x (${count} idle runners, ${count} raw ws peers), each in a fresh process`);
  const samples = await interleave({ flame: () => measure("flame", count), ws: () => measure("ws", count) }, repetitions, 0);
  const js = (runs: PerRunner[]) => runs.map((run) => run.js);
  const rss = (runs: PerRunner[]) => runs.map((run) => run.rss);
  const underOneMiB = (_ratio: number, flameMedian: number) => ({ text: "< 1024 KiB", met: flameMedian < 1024 });
  return {
    id: "parent-memory",
    title: "6a. Parent memory",
    metric: `per idle runner (${count} runners)`,
    unit: "KiB",
    better: "lower",
    repetitions,
    perRepetition: `${count} extra runners in a fresh parent`,
    comparisons: [
      compare("raw ws peer: heap + external", js(samples.flame), js(samples.ws), { target: underOneMiB }),
      compare("raw ws peer: RSS", rss(samples.flame), rss(samples.ws), { target: underOneMiB }),
    ],
  };
}
