/**
 * What the warm cases share: one runner of the child-process backend, booted
 * and called once before measuring, and one raw ws echo peer, both kept up
 * for every warm case so flame-ts and the baseline run interleaved. The TLS
 * rig is the same over TLS: a `tls: true` process backend (the runner dials
 * `wss://`, pinned) against the echo over `wss://`, pinned likewise.
 */
import { serialize } from "node:v8";
import type { Pool } from "flame-ts";
import type { BenchContext } from "./context.js";
import { EchoPeer } from "./echo.js";
import type { BenchFunctions } from "./flame.js";
import { benchTlsIdentity } from "./tls.js";

/** Calls in flight in the throughput case; the runner takes them all at once. */
export const IN_FLIGHT = 256;

export interface WarmRig extends BenchFunctions {
  /** Whether both sides run over TLS; the case titles say " (TLS)" then. */
  tls: boolean;
  pool: Pool;
  echoPeer: EchoPeer;
  /** How runners were started, as a runner reports it. */
  runnerExecArgv: string[];
  close(): Promise<void>;
}

export async function startWarmRig(context: BenchContext, options: { tls?: boolean } = {}): Promise<WarmRig> {
  const tls = options.tls ?? false;
  const { pool, ...functions } = context.flame.makePool({
    name: tls ? "bench-warm-tls" : "bench-warm",
    min: 1,
    max: 1,
    maxConcurrency: IN_FLIGHT,
    ...(tls ? { backend: new context.flame.flame.ProcessBackend({ execArgv: [], tls: true }) } : {}),
  });
  const [echoPeer] = await Promise.all([tls ? benchTlsIdentity().then((identity) => EchoPeer.start(identity)) : EchoPeer.start(), pool.start()]);
  const startup = await functions.startup();
  if (startup.execArgv.length > 0 || /tsx/.test(startup.nodeOptions)) {
    throw new Error(`benchmark runners must start like production runners, but got execArgv ${JSON.stringify(startup.execArgv)} and NODE_OPTIONS "${startup.nodeOptions}"`);
  }
  return {
    tls,
    pool,
    ...functions,
    echoPeer,
    runnerExecArgv: startup.execArgv,
    async close() {
      await Promise.all([pool.stop(), echoPeer.close()]);
    },
  };
}

/**
 * The size of the frame flame-ts puts on the wire for a call of `functionId`
 * with `args` (the protocol's call message, V8-serialized): the raw ws echo
 * sends a payload of exactly this size.
 */
export function callFrameSize(functionId: string, args: unknown[]): number {
  return serialize({ type: "call", callId: 123_456, functionId, args, child: false }).byteLength;
}
