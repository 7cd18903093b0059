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
  /** Turns the bound port into the URL runners dial. */
  advertisedUrl(boundPort: number): string;
}

/**
 * The address that binds `host`:`port` and has runners dial
 * `ws://<advertisedHost>:<bound port>` (an IPv6 address goes in brackets).
 */
export function advertisedAddress(bind: { host: string; port: number }, advertisedHost: string): ControlPlaneAddress {
  const dialHost = advertisedHost.includes(":") && !advertisedHost.startsWith("[") ? `[${advertisedHost}]` : advertisedHost;
  return { host: bind.host, port: bind.port, advertisedUrl: (boundPort) => `ws://${dialHost}:${boundPort}` };
}
