/**
 * The TLS baselines' identity: a key and self-signed certificate made the way
 * flame-ts makes its listener's (ECDSA P-256, the same generator, imported from
 * the sources: it is not public, and the benchmark runs under tsx), so the raw
 * `wss` baselines negotiate the same cipher suite and signature as flame-ts.
 * Baseline peers (other processes) get it in FLAME_BENCH_TLS and pin it, as a
 * runner pins its parent's certificate given in FLAME_PARENT.
 */
import { generateTlsIdentity, fingerprintOf } from "../../src/control-plane/certificate.js";

export interface BenchTlsIdentity {
  certificatePem: string;
  keyPem: string;
  fingerprint256: string;
}

/** The variable the baseline fixtures read (bench/fixtures/echo-peer.mjs, connect-once.mjs). */
export const BENCH_TLS_ENV = "FLAME_BENCH_TLS";

let identity: Promise<BenchTlsIdentity> | undefined;

/** One identity per benchmark run, made on first use. */
export function benchTlsIdentity(): Promise<BenchTlsIdentity> {
  identity ??= generateTlsIdentity("flame-ts bench baseline").then((made) => ({ ...made, fingerprint256: fingerprintOf(made.certificatePem) }));
  return identity;
}

/** The environment a baseline peer needs to dial `wss://` pinned to `tls`. */
export function peerTlsEnv(tls: BenchTlsIdentity): NodeJS.ProcessEnv {
  return { ...process.env, [BENCH_TLS_ENV]: JSON.stringify({ ca: tls.certificatePem, fingerprint256: tls.fingerprint256 }) };
}
