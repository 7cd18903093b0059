/**
 * Case 2, throughput: IN_FLIGHT no-op calls kept in flight to one runner,
 * against the raw ws echo with as many messages in flight, piscina with one
 * worker thread and workerpool with one child process running the same function.
 * On the TLS rig ("2. Throughput (TLS)") the only baseline is the echo over
 * `wss`: piscina and workerpool have no network between their two sides.
 */
import type { BenchContext } from "../lib/context.js";
import { closedLoopRate, interleave, type RateSummary } from "../lib/measure.js";
import { startPiscina, startWorkerpool } from "../lib/peers.js";
import { compare, type CaseResult } from "../lib/report.js";
import { callFrameSize, IN_FLIGHT, type WarmRig } from "../lib/warm-rig.js";

export interface ThroughputOutcome {
  result: CaseResult;
  samples: Record<"flame" | "ws" | "piscina" | "workerpool", RateSummary[]>;
}

/** The TLS rig's throughput: flame-ts and the `wss` echo, IN_FLIGHT in flight. */
export async function throughputTlsCase(context: BenchContext, rig: WarmRig): Promise<CaseResult> {
  const total = context.quick ? 10_000 : 30_000;
  const repetitions = context.quick ? 4 : 8;
  const payload = Buffer.alloc(callFrameSize("noop", []));
  context.progress(`throughput (TLS): ${repetitions} x ${total} calls, ${IN_FLIGHT} in flight (flame-ts, raw wss)`);
  const samples = await interleave(
    {
      flame: () => closedLoopRate(total, IN_FLIGHT, () => rig.noop()),
      ws: () => closedLoopRate(total, IN_FLIGHT, () => rig.echoPeer.roundTrip(payload)),
    },
    repetitions,
  );
  return {
    id: "throughput-tls",
    title: "2. Throughput (TLS)",
    metric: `no-op calls, ${IN_FLIGHT} in flight`,
    unit: "rate",
    better: "higher",
    repetitions,
    perRepetition: `${total} calls`,
    comparisons: [
      compare(`raw wss echo (${payload.byteLength} B)`, samples.flame.map((s) => s.rate), samples.ws.map((s) => s.rate), {
        target: (ratio) => ({ text: ">= 1x", met: ratio >= 1 }),
      }),
    ],
  };
}

export async function throughputCase(context: BenchContext, rig: WarmRig): Promise<ThroughputOutcome> {
  const total = context.quick ? 10_000 : 30_000;
  const repetitions = context.quick ? 4 : 8;
  const payload = Buffer.alloc(callFrameSize("noop", []));
  context.progress(`throughput: ${repetitions} x ${total} calls, ${IN_FLIGHT} in flight (flame-ts, raw ws, piscina, workerpool)`);
  const piscina = startPiscina(1);
  const pool = startWorkerpool();
  try {
    const samples = await interleave(
      {
        flame: () => closedLoopRate(total, IN_FLIGHT, () => rig.noop()),
        ws: () => closedLoopRate(total, IN_FLIGHT, () => rig.echoPeer.roundTrip(payload)),
        piscina: () => closedLoopRate(total, IN_FLIGHT, () => piscina.run(undefined, { name: "noop" })),
        workerpool: () => closedLoopRate(total, IN_FLIGHT, () => pool.exec("noop", [])),
      },
      repetitions,
    );
    const flameRates = samples.flame.map((s) => s.rate);
    return {
      samples,
      result: {
        id: "throughput",
        title: "2. Throughput",
        metric: `no-op calls, ${IN_FLIGHT} in flight`,
        unit: "rate",
        better: "higher",
        repetitions,
        perRepetition: `${total} calls`,
        comparisons: [
          compare(`raw ws echo (${payload.byteLength} B)`, flameRates, samples.ws.map((s) => s.rate), {
            target: (ratio) => ({ text: ">= 1x", met: ratio >= 1 }),
          }),
          compare("piscina, 1 thread", flameRates, samples.piscina.map((s) => s.rate), { target: (ratio) => ({ text: ">= 5x", met: ratio >= 5 }) }),
          compare("workerpool, 1 process", flameRates, samples.workerpool.map((s) => s.rate)),
        ],
      },
    };
  } finally {
    await Promise.all([piscina.destroy(), pool.terminate()]);
  }
}
