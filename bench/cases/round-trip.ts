/**
 * Case 1, warm call round trip: sequential calls of a no-op defined function
 * on one warm runner, against a raw ws echo of a payload of the same size
 * (the floor for any remote call over a WebSocket). On the TLS rig both run
 * over TLS: the row is "1. Warm call round trip (TLS)", against the `wss` echo.
 * On the clear rig, a third contender: the same calls with OpenTelemetry's SDK
 * registered on both sides (traced-rig.ts), against the same echo.
 */
import type { BenchContext } from "../lib/context.js";
import { interleave, latencyBatch, type LatencySummary } from "../lib/measure.js";
import { compare, wsEchoLatency, type CaseResult } from "../lib/report.js";
import { median, ratios } from "../lib/stats.js";
import { TracedRig } from "../lib/traced-rig.js";
import { callFrameSize, type WarmRig } from "../lib/warm-rig.js";

export interface RoundTripOutcome {
  result: CaseResult;
  samples: Record<"flame" | "ws", LatencySummary[]>;
}

export async function roundTripCase(context: BenchContext, rig: WarmRig): Promise<RoundTripOutcome> {
  const calls = context.quick ? 2_000 : 5_000;
  const repetitions = context.quick ? 5 : 10;
  const payload = Buffer.alloc(callFrameSize("noop", []));
  const tls = rig.tls ? " (TLS)" : "";
  context.progress(`warm round trip${tls}: ${repetitions} x ${calls} sequential calls (echo payload ${payload.byteLength} bytes)`);
  // The SDK is registered process-wide: the traced calls run in a parent process of their own.
  const traced = rig.tls ? undefined : await TracedRig.start();
  const contenders: Record<string, () => Promise<LatencySummary>> = {
    flame: () => latencyBatch(calls, () => rig.noop()),
    ws: () => latencyBatch(calls, () => rig.echoPeer.roundTrip(payload)),
  };
  if (traced) contenders.traced = () => traced.batch(calls);
  let measured: Record<string, LatencySummary[]>;
  try {
    measured = await interleave(contenders, repetitions);
  } finally {
    await traced?.close();
  }
  const samples = { flame: measured.flame!, ws: measured.ws! };
  const tracedSamples = measured.traced;
  return {
    samples,
    result: {
      id: rig.tls ? "round-trip-tls" : "round-trip",
      title: `1. Warm call round trip${tls}`,
      metric: "no-op call, sequential",
      unit: "ms",
      better: "lower",
      repetitions,
      perRepetition: `${calls} sequential calls`,
      comparisons: [
        wsEchoLatency(payload.byteLength, samples, rig.tls, 1.2),
        ...(tracedSamples ? [tracedComparison(payload.byteLength, tracedSamples, samples)] : []),
      ],
    },
  };
}

/** The traced calls against the same raw echo; the note gives them against the untraced calls of the same repetitions. */
function tracedComparison(payloadBytes: number, traced: LatencySummary[], samples: Record<"flame" | "ws", LatencySummary[]>) {
  const overUntraced = median(ratios(traced.map((s) => s.median), samples.flame.map((s) => s.median)));
  return compare(`raw ws echo (${payloadBytes} B)`, traced.map((s) => s.median), samples.ws.map((s) => s.median), {
    flameP99: traced.map((s) => s.p99),
    otherP99: samples.ws.map((s) => s.p99),
    note: () => `OpenTelemetry SDK on both sides; ${overUntraced.toFixed(2)}x the untraced call`,
  });
}
