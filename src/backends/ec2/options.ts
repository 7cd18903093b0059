/**
 * The EC2 backend's options: declared, documented, defaulted and validated
 * here once. Durations are in milliseconds.
 */
import { InvalidOptionError } from "../../errors.js";
import * as v from "valibot";
import { milliseconds, parseOptions } from "../../validation.js";
import { controlPlaneSchema, type ControlPlaneOptions } from "../control-plane-options.js";

/** Static AWS credentials, or a function that returns them (e.g. one of `@aws-sdk/credential-providers`). */
export type Ec2Credentials =
  | { accessKeyId: string; secretAccessKey: string; sessionToken?: string }
  | (() => Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date }>);

/** What a custom `userData` function is given to write a runner's boot script from. */
export interface Ec2UserDataContext {
  runnerId: string;
  pool: string;
  /**
   * The environment the runner agent needs. With `tokenTransport: "user-data"`
   * it holds FLAME_PARENT (with the runner's one-time token); with `"ssm"` it
   * does not, and the script must read FLAME_PARENT from `parameterName`.
   */
  env: Record<string, string>;
  /** The SecureString parameter holding FLAME_PARENT (`tokenTransport: "ssm"` only). */
  parameterName: string | undefined;
  /** The region the runner's instance runs in (for `aws ssm get-parameter --region`). */
  region: string;
  /** The boot script this backend would have written: wrap or edit it rather than start from nothing. */
  defaultScript: string;
}

/** An EC2 launch template; exactly one of `id` and `name`. */
export interface Ec2LaunchTemplate {
  id?: string;
  name?: string;
  /** A version number, "$Latest" or "$Default". Default: the template's default version. */
  version?: string;
}

/** Spot capacity for runner instances (one-time requests; on-demand when spot has none, unless told otherwise). */
export interface Ec2SpotOptions {
  /** Highest hourly price in USD, e.g. "0.05". Default: the on-demand price (AWS's default). */
  maxPrice?: string;
  /** Launch on-demand when spot capacity is not available (or the price is too low). Default true. */
  fallbackToOnDemand?: boolean;
}

/** Options of `new Ec2Backend(options)` (all in docs/ec2.md). */
export interface Ec2BackendOptions {
  /** AWS region. Default: the AWS SDK's resolution (AWS_REGION, the profile, ...). */
  region?: string;
  /** Endpoint override for EC2 and SSM, e.g. a moto or LocalStack URL. Default: AWS's. */
  endpoint?: string;
  /** AWS credentials of the parent. Default: the AWS SDK's chain (env, profile, instance or task role). */
  credentials?: Ec2Credentials;

  /** AMI to boot. Takes precedence over `imageParameter`. */
  imageId?: string;
  /**
   * SSM parameter holding the AMI id, read once with GetParameter and cached.
   * Default (when neither `imageId` nor `launchTemplate` is set):
   * "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64".
   */
  imageParameter?: string;
  /** Launch template to start from; the options given here override its values. */
  launchTemplate?: Ec2LaunchTemplate;
  /** Instance type. Default "t3.small" (or the launch template's when one is given). */
  instanceType?: string;
  /** Subnet to launch in (its VPC must let runners reach the parent). Default: the default VPC's default subnet. */
  subnetId?: string;
  /** Security groups of runners. Default: the VPC's default group. */
  securityGroupIds?: string[];
  /**
   * Instance profile name or ARN for runners. Needed to pull from ECR and, with
   * `tokenTransport: "ssm"`, to read and delete the boot parameter. Default none.
   */
  iamInstanceProfile?: string;
  /** EC2 key pair for SSH access to runners. Default none. */
  keyName?: string;
  /**
   * Run runners on spot capacity: one-time requests, terminated on
   * interruption. `true` or options. Default false (on-demand).
   */
  spot?: boolean | Ec2SpotOptions;
  /**
   * Extra tags on runners' instances, volumes and boot parameters. `list` (and
   * so `pool.reap()`) only finds instances carrying them, which keeps two apps
   * in one account apart. Keys may not start with "aws:" or "flame:".
   */
  tags?: Record<string, string>;

  /**
   * Container image runners run (with your app and flame-ts in it; its command
   * runs the runner agent). The default boot script installs Docker on Amazon
   * Linux, logs in to ECR when the image is in ECR, and runs it with host
   * networking. Required unless `runnerCommand` or `userData` is given.
   */
  runnerImage?: string;
  /**
   * Shell command that runs the runner agent, instead of running
   * `runnerImage` with Docker: for AMIs with the app baked in, e.g.
   * "node /opt/app/node_modules/flame-ts/dist/runner-agent/main.js".
   * It runs with the runner environment exported.
   */
  runnerCommand?: string;
  /** Writes the whole boot script (bash) instead of the default one. */
  userData?: (context: Ec2UserDataContext) => string;
  /**
   * Module the runner agent imports, as a path inside the runner image
   * (exported as FLAME_ENTRY). Default: the pool's `entry`, else none (the
   * image's command names it).
   */
  entry?: string;
  /**
   * Extra environment for runners. The parent's FLAME_BUILD_ID reaches them
   * without it (a FLAME_BUILD_ID set here wins). Written into user data, which
   * anyone allowed ec2:DescribeInstanceAttribute can read: no secrets.
   */
  env?: Record<string, string>;
  /**
   * How a runner gets its one-time boot token: "user-data" (in the boot
   * script) or "ssm" (a SecureString parameter per runner that the boot script
   * reads and deletes; user data holds only its name). Default "user-data".
   */
  tokenTransport?: "user-data" | "ssm";
  /** Path prefix of the boot parameters (`tokenTransport: "ssm"`). Default "/flame-ts". */
  ssmParameterPrefix?: string;

  /**
   * Where the parent listens and what runners dial. Defaults: `host`
   * "0.0.0.0" (runners connect over the VPC); `port` 3526, fixed so that the
   * security groups can let runners reach it (0: any free port);
   * `advertisedHost` the parent's private IPv4 address from the instance
   * metadata service (IMDSv2), which works when the parent itself runs on EC2.
   */
  controlPlane?: ControlPlaneOptions;

  /** Milliseconds between checks of booting runners' instance states, to fail a boot early when its instance dies. Default 5 000. */
  statusPollInterval?: number;
  /**
   * Milliseconds before the first retry of a capacity or throttling error, at
   * most (the wait is drawn between half of it and all of it, so that runners
   * failing together do not retry together); doubles after each retry up to
   * 20 000. Default 1 000.
   */
  retryDelay?: number;
}

/** The public Amazon Linux 2023 AMI (x86_64) parameter. */
export const DEFAULT_IMAGE_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";
export const DEFAULT_INSTANCE_TYPE = "t3.small";
/** "FLAM" on a phone keypad; a fixed port so security groups can name it. */
export const DEFAULT_CONTROL_PLANE_PORT = 3526;

const nonEmpty = () => v.pipe(v.string(), v.minLength(1));
const envName = v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "Expected environment variable names (letters, digits, '_')"));
const credentials = v.union([
  // Not strict: the AWS SDK marks credential objects it has used with extra fields.
  v.object({ accessKeyId: nonEmpty(), secretAccessKey: nonEmpty(), sessionToken: v.optional(v.string()) }),
  v.function(),
]);

const schema = v.strictObject({
  region: v.optional(v.pipe(v.string(), v.regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, "Expected an AWS region such as us-east-1"))),
  endpoint: v.optional(v.pipe(v.string(), v.url())),
  credentials: v.optional(credentials),
  imageId: v.optional(v.pipe(v.string(), v.regex(/^ami-[0-9a-f]+$/, "Expected an AMI id such as ami-0123456789abcdef0"))),
  imageParameter: v.optional(v.pipe(v.string(), v.regex(/^\/?[A-Za-z0-9_.\-/]+$/, "Expected an SSM parameter name"))),
  launchTemplate: v.optional(
    v.pipe(
      v.strictObject({ id: v.optional(nonEmpty()), name: v.optional(nonEmpty()), version: v.optional(nonEmpty()) }),
      v.check((template) => (template.id === undefined) !== (template.name === undefined), "Expected exactly one of id and name"),
    ),
  ),
  instanceType: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9-]+\.[a-z0-9-]+$/, "Expected an instance type such as t3.small"))),
  subnetId: v.optional(v.pipe(v.string(), v.regex(/^subnet-[0-9a-f]+$/, "Expected a subnet id such as subnet-0123abcd"))),
  securityGroupIds: v.optional(v.pipe(v.array(v.pipe(v.string(), v.regex(/^sg-[0-9a-f]+$/, "Expected security group ids such as sg-0123abcd"))), v.minLength(1))),
  iamInstanceProfile: v.optional(nonEmpty()),
  keyName: v.optional(nonEmpty()),
  spot: v.optional(
    v.union([
      v.boolean(),
      v.strictObject({
        maxPrice: v.optional(v.pipe(v.string(), v.regex(/^\d+(\.\d+)?$/, "Expected a price in USD such as \"0.05\""))),
        fallbackToOnDemand: v.optional(v.boolean()),
      }),
    ]),
    false,
  ),
  tags: v.optional(
    v.pipe(
      v.record(
        v.pipe(
          v.string(),
          v.minLength(1),
          v.maxLength(128),
          v.check((key) => !/^(aws|flame):/i.test(key), "Tag keys starting with \"aws:\" or \"flame:\" are reserved"),
        ),
        v.pipe(v.string(), v.maxLength(256)),
      ),
      v.check((tags) => Object.keys(tags).length <= 45, "Expected at most 45 tags (EC2 allows 50; flame-ts adds its own)"),
    ),
    {},
  ),
  runnerImage: v.optional(nonEmpty()),
  runnerCommand: v.optional(nonEmpty()),
  userData: v.optional(v.function()),
  entry: v.optional(nonEmpty()),
  env: v.optional(v.record(envName, v.string()), {}),
  tokenTransport: v.optional(v.picklist(["user-data", "ssm"]), "user-data"),
  ssmParameterPrefix: v.optional(
    v.pipe(v.string(), v.regex(/^(\/[A-Za-z0-9_.-]+)+$/, "Expected a parameter path such as /flame-ts")),
    "/flame-ts",
  ),
  controlPlane: controlPlaneSchema({ host: "0.0.0.0", port: DEFAULT_CONTROL_PLANE_PORT }),
  statusPollInterval: v.optional(v.pipe(milliseconds(), v.minValue(10)), 5_000),
  retryDelay: v.optional(v.pipe(milliseconds(), v.minValue(1)), 1_000),
});

type Parsed = v.InferOutput<typeof schema>;

/**
 * Options after validation, with defaults applied.
 * @internal
 */
export type ResolvedEc2Options = Omit<Parsed, "spot" | "userData" | "credentials"> & {
  credentials: Ec2Credentials | undefined;
  userData: Ec2BackendOptions["userData"];
  /** Spot settings, or undefined for on-demand. */
  spot: { maxPrice: string | undefined; fallbackToOnDemand: boolean } | undefined;
};

/** Options of earlier versions and their names now, so that old code gets told what to write instead. */
const RENAMED_OPTIONS: Record<string, string> = {
  listenHost: "controlPlane.host",
  listenPort: "controlPlane.port",
  parentAddress: "controlPlane.advertisedHost",
};

/**
 * Validates Ec2Backend options once, at construction.
 * @internal
 */
export function resolveEc2Options(input: Ec2BackendOptions): ResolvedEc2Options {
  if (typeof input !== "object" || input === null) {
    throw new InvalidOptionError(`Ec2Backend options must be an object, got ${String(input)}`);
  }
  for (const [old, now] of Object.entries(RENAMED_OPTIONS)) {
    if (old in input) throw new InvalidOptionError(`invalid Ec2Backend options: "${old}" is now "${now}" (see CHANGELOG.md)`);
  }
  const parsed = parseOptions("Ec2Backend", schema, input);
  if (parsed.runnerImage === undefined && parsed.runnerCommand === undefined && parsed.userData === undefined) {
    throw new InvalidOptionError(
      'invalid Ec2Backend options: set "runnerImage" (a container image with your app and flame-ts), "runnerCommand" (for an AMI with them installed) or "userData"',
    );
  }
  if (parsed.runnerImage !== undefined && parsed.runnerCommand !== undefined) {
    throw new InvalidOptionError('invalid Ec2Backend options: "runnerImage" and "runnerCommand" both say how to run the runner; set one');
  }
  if (parsed.imageId !== undefined && parsed.imageParameter !== undefined) {
    throw new InvalidOptionError('invalid Ec2Backend options: "imageId" and "imageParameter" both name the AMI; set one');
  }
  const spot = parsed.spot === false ? undefined : parsed.spot === true ? {} : parsed.spot;
  return {
    ...parsed,
    credentials: parsed.credentials as Ec2Credentials | undefined,
    userData: parsed.userData as Ec2BackendOptions["userData"],
    imageParameter: parsed.imageId === undefined && parsed.launchTemplate === undefined
      ? (parsed.imageParameter ?? DEFAULT_IMAGE_PARAMETER)
      : parsed.imageParameter,
    instanceType: parsed.instanceType ?? (parsed.launchTemplate === undefined ? DEFAULT_INSTANCE_TYPE : undefined),
    spot: spot && { maxPrice: spot.maxPrice, fallbackToOnDemand: spot.fallbackToOnDemand ?? true },
  };
}
