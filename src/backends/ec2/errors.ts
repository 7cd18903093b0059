/**
 * Turns AWS SDK errors into BackendErrors that say what is wrong and whether
 * another attempt may help: bad credentials, a wrong AMI, subnet, group or
 * profile, and quotas fail fast; capacity and throttling are retried.
 */
import { BackendError, ERROR_CODES } from "../../errors.js";

/** Stable codes of the EC2 backend's BackendErrors. */
export const EC2_ERROR_CODES = {
  unauthorized: ERROR_CODES.FLAME_EC2_UNAUTHORIZED,
  invalidConfiguration: ERROR_CODES.FLAME_EC2_INVALID_CONFIGURATION,
  quota: ERROR_CODES.FLAME_EC2_QUOTA,
  capacity: ERROR_CODES.FLAME_EC2_CAPACITY,
  throttled: ERROR_CODES.FLAME_EC2_THROTTLED,
  failed: ERROR_CODES.FLAME_EC2_FAILED,
} as const;

/** The error name AWS gave (EC2's `Code`), or the SDK's name for client-side failures. */
export function awsErrorCode(error: unknown): string {
  const candidate = error as { name?: unknown; Code?: unknown; code?: unknown } | undefined;
  for (const value of [candidate?.Code, candidate?.name, candidate?.code]) {
    if (typeof value === "string" && value !== "" && value !== "Error") return value;
  }
  return "UnknownError";
}

const UNAUTHORIZED = new Set([
  "UnauthorizedOperation",
  "AuthFailure",
  "AccessDeniedException",
  "AccessDenied",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "ExpiredTokenException",
  "OptInRequired",
  "CredentialsProviderError",
]);
const QUOTA = new Set(["VcpuLimitExceeded", "InstanceLimitExceeded", "MaxSpotInstanceCountExceeded", "ParameterLimitExceeded"]);
const CAPACITY = new Set(["InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity", "SpotMaxPriceTooLow"]);
const THROTTLING = new Set([
  "RequestLimitExceeded",
  "Throttling",
  "ThrottlingException",
  "TooManyRequestsException",
  "ThrottledException",
  "ServiceUnavailable",
  "ServiceUnavailableException",
  "Unavailable",
  "InternalError",
  "InternalFailure",
  "InternalServerError",
]);
/** Errors that say the spot market cannot serve the request now (on-demand may). */
const SPOT_CAPACITY = new Set(["InsufficientInstanceCapacity", "InsufficientCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded"]);

/** Whether a spot launch failed for lack of spot capacity or price, so on-demand may work. */
export function isSpotCapacityError(error: unknown): boolean {
  return SPOT_CAPACITY.has(awsErrorCode(error));
}

/** Why an invalid-resource error happened, in words that point at the option to fix. */
function invalidResourceHint(code: string): string | undefined {
  if (code.startsWith("InvalidAMIID")) return 'the AMI ("imageId", "imageParameter" or the launch template) does not exist here or is not usable';
  if (code.startsWith("InvalidSubnet")) return 'the subnet ("subnetId") does not exist in this region';
  if (code.startsWith("InvalidGroup") || code.startsWith("InvalidSecurityGroup")) return 'a security group ("securityGroupIds") does not exist in the subnet\'s VPC';
  if (code.startsWith("InvalidKeyPair")) return 'the key pair ("keyName") does not exist in this region';
  if (code.startsWith("InvalidLaunchTemplate")) return 'the launch template ("launchTemplate") does not exist';
  if (code.startsWith("InvalidInstanceType") || code === "Unsupported") return 'the instance type ("instanceType") is not offered here (try another availability zone or type)';
  if (code === "InvalidParameterValue" || code === "InvalidParameterCombination" || code === "InvalidParameter") {
    return 'a launch parameter was refused (often the instance profile, "iamInstanceProfile", which must be an existing profile name or ARN that the parent may pass with iam:PassRole)';
  }
  if (code === "ParameterNotFound") return 'the SSM parameter ("imageParameter") does not exist in this region';
  if (code === "IdempotentParameterMismatch") return "a launch with this runner's client token but different parameters already happened";
  return undefined;
}

/**
 * The BackendError for an SDK error raised by `operation` (e.g. "EC2 RunInstances"). Messages carry
 * AWS's own text (which names the resource) but never request parameters, so
 * no token or user data can leak through them.
 */
export function classifyAwsError(operation: string, error: unknown): BackendError {
  if (error instanceof BackendError) return error;
  const code = awsErrorCode(error);
  const awsMessage = (error as Error | undefined)?.message?.trim() || code;
  const said = `${operation} failed with ${code}: ${awsMessage}`;
  if (UNAUTHORIZED.has(code)) {
    return new BackendError(
      `${said}. The parent's AWS identity is not allowed to do this, or its credentials are invalid: see the IAM permissions the EC2 backend needs in docs/ec2.md`,
      { retryable: false, cause: error, code: EC2_ERROR_CODES.unauthorized },
    );
  }
  if (QUOTA.has(code)) {
    return new BackendError(
      `${said}. An account quota is reached: lower the pool's max, stop other instances, or ask AWS for a higher quota (Service Quotas, "Running On-Demand instances" vCPUs)`,
      { retryable: false, cause: error, code: EC2_ERROR_CODES.quota },
    );
  }
  if (CAPACITY.has(code)) {
    return new BackendError(`${said}. AWS has no capacity for this instance type here right now`, {
      retryable: true,
      cause: error,
      code: EC2_ERROR_CODES.capacity,
    });
  }
  if (THROTTLING.has(code)) {
    return new BackendError(`${said}. AWS is throttling or temporarily unavailable`, { retryable: true, cause: error, code: EC2_ERROR_CODES.throttled });
  }
  const hint = invalidResourceHint(code);
  if (hint) {
    return new BackendError(`${said}. Check the Ec2Backend options: ${hint}`, {
      retryable: false,
      cause: error,
      code: EC2_ERROR_CODES.invalidConfiguration,
    });
  }
  // Anything else: a client fault will not fix itself; a server or network fault may.
  const fault = (error as { $fault?: unknown } | undefined)?.$fault;
  return new BackendError(said, { retryable: fault !== "client", cause: error, code: EC2_ERROR_CODES.failed });
}
