/**
 * Case 3, large payloads: a 1 MiB Buffer as argument and as result (an echo
 * function), sequentially, against the raw ws echo of a frame of the same size.
 */
import { randomBytes } from "node:crypto";
import type { BenchContext } from "../lib/context.js";
import { interleave, latencyBatch } from "../lib/measure.js";
import { wsEchoLatency, type CaseResult } from "../lib/report.js";
import { callFrameSize, type WarmRig } from "../lib/warm-rig.js";

const MIB = 1024 * 1024;

export async function largePayloadCase(context: BenchContext, rig: WarmRig): Promise<CaseResult> {
  const calls = context.quick ? 40 : 150;
  const repetitions = context.quick ? 4 : 8;
  const argument = randomBytes(MIB);
  const payload = randomBytes(callFrameSize("echo", [argument]));
  context.progress(`large payload: ${repetitions} x ${calls} sequential 1 MiB echoes`);
  const samples = await interleave(
    {
      flame: () =>
        latencyBatch(calls, async () => {
          const result = await rig.echo(argument);
          if (result.byteLength !== MIB) throw new Error(`echo returned ${result.byteLength} bytes`);
        }),
      ws: () => latencyBatch(calls, () => rig.echoPeer.roundTrip(payload)),
    },
    repetitions,
  );
  return {
    id: "large-payload",
    title: "3. Large payload",
    metric: "1 MiB Buffer in and out",
    unit: "ms",
    better: "lower",
    repetitions,
    perRepetition: `${calls} sequential calls`,
    comparisons: [
      wsEchoLatency(payload.byteLength, samples),
    ],
  };
}
