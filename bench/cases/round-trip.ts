/**
 * Case 1, warm call round trip: sequential calls of a no-op defined function
 * on one warm runner, against a raw ws echo of a payload of the same size
 * (the floor for any remote call over a WebSocket). On the TLS rig both run
 * over TLS: the row is "1. Warm call round trip (TLS)", against the `wss` echo.
 */
import type { BenchContext } from "../lib/context.js";
import { interleave, latencyBatch, type LatencySummary } from "../lib/measure.js";
import { wsEchoLatency, type CaseResult } from "../lib/report.js";
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
  const samples = await interleave(
    {
      flame: () => latencyBatch(calls, () => rig.noop()),
      ws: () => latencyBatch(calls, () => rig.echoPeer.roundTrip(payload)),
    },
    repetitions,
  );
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
        wsEchoLatency(payload.byteLength, samples, rig.tls),
      ],
    },
  };
}
