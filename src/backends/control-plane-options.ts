/**
 * The `controlPlane` option every remote backend takes: where the parent
 * listens for its runners and the host they dial. One shape and one schema,
 * so that each backend differs only in its defaults (Fly: every interface, a
 * free port, FLY_PRIVATE_IP; EC2: 0.0.0.0, port 3526, the instance's private
 * IP) and a new backend reuses the same words.
 */
import * as v from "valibot";
import type { ControlPlaneTls } from "../control-plane/address.js";

/** Where the parent listens for its runners and what they dial. Each backend documents its defaults. */
export interface ControlPlaneOptions {
  /** Interface the parent's control plane binds, e.g. "::" or "0.0.0.0". */
  host?: string;
  /** Port the parent's control plane binds; 0 picks a free one (runners are told which in FLAME_PARENT). */
  port?: number;
  /** Host name or IP address runners dial to reach the parent. */
  advertisedHost?: string;
  /**
   * TLS between runners and the parent. Default `true`: the parent makes a
   * fresh key and certificate when it starts listening and runners pin it, so
   * nobody on the network can read the traffic, or receive a runner's token by
   * posing as the parent. `false` for clear ws:// (a network you trust), or
   * `{ certificate, key, ca? }` (PEM) to use your own PKI.
   */
  tls?: ControlPlaneTls;
  /**
   * Take a runner's one-time token only from the address of the machine the
   * provider started for it, so someone who read the token elsewhere cannot
   * use it first. Default `true`; `false` where runners' connections reach
   * the parent translated (NAT, a proxy or a service-mesh sidecar between them).
   * The address is the Fly machine's private IP, the EC2 instance's private
   * IP, or the pod IP.
   */
  checkRunnerAddress?: boolean;
}

const pem = v.pipe(v.string(), v.includes("-----BEGIN ", "Expected PEM text"));

/**
 * The schema of a `tls` option (ControlPlaneTls), with the backend's default.
 * @internal
 */
export function controlPlaneTlsSchema(defaultValue: boolean) {
  return v.optional(v.union([v.boolean(), v.strictObject({ certificate: pem, key: pem, ca: v.optional(pem) })]), defaultValue);
}

/** A host that can stand in a ws:// URL: letters, digits, dots, dashes, underscores, colons and brackets (IPv6). */
const hostName = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9._:\-[\]]+$/, "Expected a host name or IP address"),
);

/**
 * The schema of `controlPlane`, with a backend's defaults for `host` and `port` (`advertisedHost` is found at run time).
 * @internal
 */
export function controlPlaneSchema(defaults: { host: string; port: number }) {
  return v.optional(
    v.strictObject({
      host: v.optional(hostName, defaults.host),
      port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65_535)), defaults.port),
      advertisedHost: v.optional(hostName),
      tls: controlPlaneTlsSchema(true),
      checkRunnerAddress: v.optional(v.boolean(), true),
    }),
    {},
  );
}
