/**
 * The parent's private IPv4 address, read from the EC2 instance metadata
 * service with IMDSv2 (a session token first, then the value), for when the
 * parent runs on EC2 and `controlPlane.advertisedHost` is not set.
 */
import { BackendError } from "../../errors.js";
import { EC2_ERROR_CODES } from "./errors.js";

/** The AWS SDK's variable for a non-default metadata endpoint; honoured the same way here. */
export const METADATA_ENDPOINT_VAR = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
const DEFAULT_ENDPOINT = "http://169.254.169.254";
/** Off EC2 the address is unreachable: fail fast rather than stall the first boot. */
const REQUEST_TIMEOUT = 2_000;

/** Resolves this machine's private IPv4 address through IMDSv2. */
export async function privateIpFromMetadata(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const base = (env[METADATA_ENDPOINT_VAR] || DEFAULT_ENDPOINT).replace(/\/+$/, "");
  try {
    const tokenResponse = await fetch(`${base}/latest/api/token`, {
      method: "PUT",
      headers: { "x-aws-ec2-metadata-token-ttl-seconds": "60" },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT),
    });
    if (!tokenResponse.ok) throw new Error(`token request answered ${tokenResponse.status}`);
    const token = await tokenResponse.text();
    const ipResponse = await fetch(`${base}/latest/meta-data/local-ipv4`, {
      headers: { "x-aws-ec2-metadata-token": token },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT),
    });
    if (!ipResponse.ok) throw new Error(`local-ipv4 answered ${ipResponse.status}`);
    const ip = (await ipResponse.text()).trim();
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(ip)) throw new Error(`local-ipv4 is not an IPv4 address: ${JSON.stringify(ip.slice(0, 60))}`);
    return ip;
  } catch (error) {
    throw new BackendError(
      `could not find the parent's private address from the EC2 instance metadata service at ${base} (${(error as Error).message}): ` +
        'when the parent does not run on EC2 (or IMDS is off), set the Ec2Backend "controlPlane.advertisedHost" option to an address runners can reach',
      { retryable: false, cause: error, code: EC2_ERROR_CODES.invalidConfiguration },
    );
  }
}
