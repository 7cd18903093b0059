/**
 * Case 8, routing: what the parent spends per call as the pool grows. The
 * real Scheduler, Runners and PendingCalls place IN_FLIGHT calls at a time on
 * 50 ready runners, against the same on 1 runner, and answer them; the
 * runners' sockets only take frames, so no network or runner work dilutes
 * what placing and settling a call costs on the parent. A pool that scanned
 * every runner per call would fall behind as it grows (the pool before load
 * buckets: 0.63-0.73x here, and 0.58x at 200 runners). The ratio cannot
 * reach 1x: 50 sockets take 50 flushes and batches per tick where 1 takes one.
 *
 * Unlike the other cases this measures the source (src/pool), not dist/:
 * the Scheduler is internal and not exported by the package.
 */
import { EventEmitter } from "node:events";
import type { Backend } from "../../src/backends/backend.js";
import { resolvePoolOptions } from "../../src/pool/options.js";
import { Deadlines } from "../../src/pool/deadlines.js";
import { PendingCall } from "../../src/pool/pending-call.js";
import type { Runner } from "../../src/pool/runner.js";
import { Scheduler } from "../../src/pool/scheduler.js";
import { encodeMessage } from "../../src/protocol/codec.js";
import type { BenchContext } from "../lib/context.js";
import { interleave } from "../lib/measure.js";
import { compare, type CaseResult } from "../lib/report.js";
import { IN_FLIGHT } from "../lib/warm-rig.js";

const LARGE_POOL = 50;
const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** A runner's socket as far as the parent's Runner uses it, that drops what it is sent. */
class FrameSink extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  send(): void {}
  ping(): void {}
  terminate(): void {
    this.readyState = 3;
  }
}

interface RoutingRig {
  /** Places and answers `total` calls, IN_FLIGHT at a time; resolves with the rate per second. */
  rate(total: number): Promise<number>;
  close(): Promise<void>;
}

async function routingRig(runners: number): Promise<RoutingRig> {
  const backend: Backend = { name: "sink", provision: () => Promise.reject(new Error("unused")), terminate: async () => undefined, list: async () => [] };
  const options = resolvePoolOptions(
    { name: "routing", min: runners, max: runners, maxConcurrency: IN_FLIGHT, idleShutdownAfter: Infinity, backend, log: false },
    { constructedIn: undefined, onRunner: false },
  );
  const sinks = new Map<Runner, FrameSink>();
  const scheduler = new Scheduler({
    name: "routing",
    options,
    backend,
    bootTimeout: 30_000,
    appVersion: "bench",
    log: silent,
    launch: async (runner) => {
      const sink = new FrameSink();
      sinks.set(runner, sink);
      runner.markProvisioned({ runnerId: runner.id, providerId: runner.id });
      runner.attach(sink as never, 3_600_000);
      runner.markReady();
    },
  });
  await scheduler.growToMin();
  const frame = encodeMessage({ type: "call", callId: 0, functionId: "noop", args: [] });
  // Results are encoded ahead, one per call id, so encoding them is not part of what is measured.
  const results = Array.from({ length: IN_FLIGHT * 2 + 1 }, (_, callId) => encodeMessage({ type: "result", callId, ok: true, value: null }));
  const deadlines = new Deadlines();
  let nextCallId = 1;
  let placed: PendingCall[] = [];
  const answerPlaced = () => {
    const calls = placed;
    placed = [];
    for (const call of calls) sinks.get(call.runner!)!.emit("message", results[call.callId], true);
  };
  const call = () =>
    new Promise((resolve, reject) => {
      // Ids cycle through the pre-encoded results: at most IN_FLIGHT are in flight at once.
      const callId = nextCallId;
      nextCallId = nextCallId === IN_FLIGHT * 2 ? 1 : nextCallId + 1;
      const pending = new PendingCall({
        callId,
        functionId: "noop",
        frame,
        poolName: "routing",
        child: false,
        executionTimeout: Infinity,
        deadlines,
        resolve,
        reject,
        onGiveUp: () => undefined,
        onPlaced: () => {
          if (placed.length === 0) setImmediate(answerPlaced);
          placed.push(pending);
        },
      });
      scheduler.submit(pending);
    });
  return {
    async rate(total) {
      let started = 0;
      const lane = async () => {
        while (started < total) {
          started += 1;
          await call();
        }
      };
      const start = performance.now();
      await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
      return (total / (performance.now() - start)) * 1000;
    },
    close: () => scheduler.stop(),
  };
}

export async function routingCase(context: BenchContext): Promise<CaseResult> {
  const total = context.quick ? 100_000 : 300_000;
  const repetitions = context.quick ? 5 : 10;
  context.progress(`routing: ${repetitions} x ${total} calls, ${IN_FLIGHT} in flight, on ${LARGE_POOL} runners and on 1 (no network)`);
  const large = await routingRig(LARGE_POOL);
  const single = await routingRig(1);
  try {
    const samples = await interleave({ large: () => large.rate(total), single: () => single.rate(total) }, repetitions);
    return {
      id: "routing",
      title: "8. Routing",
      metric: `calls placed and settled by the parent, ${IN_FLIGHT} in flight`,
      unit: "rate",
      better: "higher",
      repetitions,
      perRepetition: `${total} calls`,
      comparisons: [
        compare(`the same pool with 1 runner (here ${LARGE_POOL})`, samples.large, samples.single),
      ],
    };
  } finally {
    await Promise.all([large.close(), single.close()]);
  }
}
