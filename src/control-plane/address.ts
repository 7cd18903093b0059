/**
 * Where the parent's control plane listens and the URL its runners dial: what
 * a backend tells the pool (Backend.controlPlane), and what the listener binds.
 */

/** Where the parent's control plane listens and the URL runners dial. */
export interface ControlPlaneAddress {
  /** Interface to bind, e.g. "127.0.0.1" or "::". */
  host: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** Turns the bound port into the URL runners dial (wss:// under TLS, else ws://). */
  advertisedUrl(boundPort: number): string;
  /** TLS on the control plane (see ControlPlaneTls); absent or false: in clear. */
  tls?: ControlPlaneTls | undefined;
}

/**
 * TLS for the control plane. `true`: a fresh key and self-signed certificate
 * made when the listener starts, which runners pin (they are given it in
 * FLAME_PARENT and trust nothing else). Or your own PKI: the listener serves
 * `certificate` and `key` (PEM); runners trust `ca` (PEM bundle) and check the
 * host they dial against the certificate, or, without `ca`, pin `certificate` itself.
 */
export type ControlPlaneTls = boolean | { certificate: string; key: string; ca?: string | undefined };

/**
 * The address that binds `host`:`port` and has runners dial
 * `ws://<advertisedHost>:<bound port>` (an IPv6 address goes in brackets).
 */
export function advertisedAddress(
  bind: { host: string; port: number; tls?: ControlPlaneTls | undefined },
  advertisedHost: string,
): ControlPlaneAddress {
  const dialHost = advertisedHost.includes(":") && !advertisedHost.startsWith("[") ? `[${advertisedHost}]` : advertisedHost;
  const scheme = bind.tls ? "wss" : "ws";
  return { host: bind.host, port: bind.port, tls: bind.tls, advertisedUrl: (boundPort) => `${scheme}://${dialHost}:${boundPort}` };
}

/** The parent's loopback listener (local backends): an ephemeral port on 127.0.0.1. */
export function loopbackAddress(tls: ControlPlaneTls = false): ControlPlaneAddress {
  return { host: "127.0.0.1", port: 0, tls, advertisedUrl: (port) => `${tls ? "wss" : "ws"}://127.0.0.1:${port}` };
}
