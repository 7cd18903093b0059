/**
 * The service's configuration, from environment variables only, so one build
 * runs on the child-process backend on a laptop and on Fly Machines, EC2 or
 * Kubernetes in production. Every setting is read and checked here, once, when the parent
 * starts; a missing or malformed one stops the start with a message that names
 * the variable and says what to set. The variables are listed in README.md.
 */
import {
  Ec2Backend,
  FlyBackend,
  KubernetesBackend,
  ProcessBackend,
  type Backend,
  type Ec2BackendOptions,
  type FlyBackendOptions,
  type KubernetesBackendOptions,
} from "flame-ts";

/** Where runners run: `FLAME_BACKEND`. */
export type BackendKind = "process" | "fly" | "ec2" | "kubernetes";

/** Settings of the pool that renders images. Durations in ms. */
export interface PoolSettings {
  /** `POOL_MIN`, default 0: scale to zero when idle. */
  min: number;
  /** `POOL_MAX`, default 4: most runners at once. */
  max: number;
  /**
   * `POOL_RUNNER_THREADS`, default 1: worker threads per runner. Rendering is
   * synchronous CPU work, so a runner machine with N cores renders N images
   * at once with N threads (set FLY_RUNNER_CPUS, the instance type or the pod's
   * CPU request to match).
   */
  runnerThreads: number;
  /** `POOL_MAX_CONCURRENCY`, default `POOL_RUNNER_THREADS`: renders one runner takes at once (one per thread: a render holds its thread). */
  maxConcurrency: number;
  /** `POOL_MAX_QUEUE`, default 100: requests waiting for a runner before the service answers 503. */
  maxQueue: number;
  /** `POOL_IDLE_SHUTDOWN_MS`, default 30 000: idle time before a runner shuts down. */
  idleShutdownAfter: number;
  /** `POOL_BOOT_TIMEOUT_MS`, default the backend's (30 000; EC2 300 000): longest wait for a runner. */
  bootTimeout: number | undefined;
  /** `RENDER_TIMEOUT_MS`, default 30 000: longest one render may run. */
  timeout: number;
}

/** Everything the parent needs to start. */
export interface ServiceConfig {
  /** `PORT`, default 8080 (0: any free port, printed at start). */
  port: number;
  /** `HOST`, default unset: every interface (IPv6 and IPv4 where available). */
  host: string | undefined;
  /** `FLAME_BACKEND`, default "process". */
  backendKind: BackendKind;
  /** The backend it names, configured from the environment. */
  backend: Backend;
  pool: PoolSettings;
}

/** A setting is missing or malformed. The message lists every problem found, with what to set. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`the image service is not configured correctly:\n${problems.map((problem) => `  - ${problem}`).join("\n")}`);
  }
}

type Env = NodeJS.ProcessEnv;

/** Reads the whole configuration and builds the backend; throws ConfigError listing every problem. */
export function loadConfig(env: Env = process.env): ServiceConfig {
  const problems: string[] = [];
  const read = new Reader(env, problems);
  const kind = (env.FLAME_BACKEND || "process") as BackendKind;
  if (!["process", "fly", "ec2", "kubernetes"].includes(kind)) {
    problems.push(`FLAME_BACKEND must be "process", "fly", "ec2" or "kubernetes", got ${JSON.stringify(env.FLAME_BACKEND)}`);
  }
  const runnerThreads = read.integer("POOL_RUNNER_THREADS", 1, 1);
  const config: Omit<ServiceConfig, "backend"> = {
    port: read.integer("PORT", 8080, 0, 65_535),
    host: env.HOST || undefined,
    backendKind: kind,
    pool: {
      min: read.integer("POOL_MIN", 0, 0),
      max: read.integer("POOL_MAX", 4, 1),
      runnerThreads,
      maxConcurrency: read.integer("POOL_MAX_CONCURRENCY", runnerThreads, 1),
      maxQueue: read.integer("POOL_MAX_QUEUE", 100, 0),
      idleShutdownAfter: read.integer("POOL_IDLE_SHUTDOWN_MS", 30_000, 0),
      bootTimeout: read.optionalInteger("POOL_BOOT_TIMEOUT_MS", 1),
      timeout: read.integer("RENDER_TIMEOUT_MS", 30_000, 1),
    },
  };
  if (config.pool.min > config.pool.max) problems.push(`POOL_MIN (${config.pool.min}) is greater than POOL_MAX (${config.pool.max})`);
  // The backend is built (and its settings checked) now, so that a deploy missing one fails at start, not at the first request.
  const backend = buildBackend(kind, env, problems);
  if (problems.length > 0 || backend === undefined) throw new ConfigError(problems);
  return { ...config, backend };
}

function buildBackend(kind: BackendKind, env: Env, problems: string[]): Backend | undefined {
  const before = problems.length;
  const options =
    kind === "fly" ? flyOptions(env, problems)
    : kind === "ec2" ? ec2Options(env, problems)
    : kind === "kubernetes" ? kubernetesOptions(env, problems)
    : {};
  if (problems.length > before) return undefined;
  try {
    return kind === "fly" ? new FlyBackend(options as FlyBackendOptions)
      : kind === "ec2" ? new Ec2Backend(options as Ec2BackendOptions)
      : kind === "kubernetes" ? new KubernetesBackend(options as KubernetesBackendOptions)
      : new ProcessBackend();
  } catch (error) {
    // A malformed value (a subnet id, a region...): the backend's message names the option and the value.
    problems.push((error as Error).message);
    return undefined;
  }
}

/**
 * FlyBackend reads FLY_API_TOKEN, FLY_APP_NAME, FLY_IMAGE_REF, FLY_PRIVATE_IP,
 * FLY_REGION and FLY_API_HOSTNAME itself; Fly sets all but the token on every
 * machine. They are checked here so that all the missing ones are named at once.
 */
function flyOptions(env: Env, problems: string[]): FlyBackendOptions {
  const missing = ["FLY_API_TOKEN", "FLY_APP_NAME", "FLY_IMAGE_REF", "FLY_PRIVATE_IP"].filter((name) => !env[name]);
  if (missing.length > 0) {
    problems.push(
      `FLAME_BACKEND=fly needs ${missing.join(", ")}. On Fly, only FLY_API_TOKEN is yours to set ` +
        "(`fly secrets set FLY_API_TOKEN=\"$(fly tokens create deploy)\"`); Fly sets the others. " +
        "Locally, start `npx flame-ts fly-emulator --no-validate` and export the variables it prints.",
    );
  }
  const read = new Reader(env, problems);
  const cpus = read.optionalInteger("FLY_RUNNER_CPUS", 1);
  const memoryMb = read.optionalInteger("FLY_RUNNER_MEMORY_MB", 256);
  const cpuKind = env.FLY_RUNNER_CPU_KIND || undefined;
  if (cpuKind !== undefined && cpuKind !== "shared" && cpuKind !== "performance") {
    problems.push(`FLY_RUNNER_CPU_KIND must be "shared" or "performance", got ${JSON.stringify(cpuKind)}`);
  }
  const cmd = runnerCommandWords(env, problems);
  return {
    guest: { ...(cpuKind ? { cpuKind } : {}), ...(cpus !== undefined ? { cpus } : {}), ...(memoryMb !== undefined ? { memoryMb } : {}) },
    // FlyBackend's default, secrets: "none", keeps the app's secrets (FLY_API_TOKEN among them) off runner machines; rendering needs none.
    ...(cmd ? { init: { cmd } } : {}),
  };
}

/** Ec2Backend's options; AWS credentials and region come from the AWS SDK's usual chain (AWS_REGION, a role, a profile). */
function ec2Options(env: Env, problems: string[]): Ec2BackendOptions {
  const runnerImage = env.EC2_RUNNER_IMAGE || undefined;
  const runnerCommand = env.RUNNER_COMMAND || undefined;
  if (runnerImage === undefined && runnerCommand === undefined) {
    problems.push(
      "FLAME_BACKEND=ec2 needs EC2_RUNNER_IMAGE, the image runners run (this app's image, e.g. " +
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/image-service:v1), or RUNNER_COMMAND for an AMI with the app installed",
    );
  }
  if (runnerImage !== undefined && runnerCommand !== undefined) {
    problems.push("EC2_RUNNER_IMAGE and RUNNER_COMMAND both say how runners run; set one");
  }
  const read = new Reader(env, problems);
  const tokenTransport = env.EC2_TOKEN_TRANSPORT || undefined;
  if (tokenTransport !== undefined && tokenTransport !== "user-data" && tokenTransport !== "ssm") {
    problems.push(`EC2_TOKEN_TRANSPORT must be "user-data" or "ssm", got ${JSON.stringify(tokenTransport)}`);
  }
  const controlPlanePort = read.optionalInteger("EC2_LISTEN_PORT", 0, 65_535);
  const options: Ec2BackendOptions = runnerCommand !== undefined ? { runnerCommand } : { runnerImage: runnerImage ?? "" };
  if (env.AWS_REGION) options.region = env.AWS_REGION;
  if (env.EC2_INSTANCE_TYPE) options.instanceType = env.EC2_INSTANCE_TYPE;
  if (env.EC2_SUBNET_ID) options.subnetId = env.EC2_SUBNET_ID;
  const securityGroupIds = (env.EC2_SECURITY_GROUP_IDS ?? "").split(",").map((id) => id.trim()).filter(Boolean);
  if (securityGroupIds.length > 0) options.securityGroupIds = securityGroupIds;
  if (env.EC2_INSTANCE_PROFILE) options.iamInstanceProfile = env.EC2_INSTANCE_PROFILE;
  // An id (lt-0123...) or a name.
  const template = env.EC2_LAUNCH_TEMPLATE;
  if (template) options.launchTemplate = /^lt-[0-9a-f]+$/.test(template) ? { id: template } : { name: template };
  if (tokenTransport === "user-data" || tokenTransport === "ssm") options.tokenTransport = tokenTransport;
  const checkRunnerAddress = env.EC2_CHECK_RUNNER_ADDRESS || undefined;
  if (checkRunnerAddress !== undefined && checkRunnerAddress !== "true" && checkRunnerAddress !== "false") {
    problems.push(`EC2_CHECK_RUNNER_ADDRESS must be "true" or "false", got ${JSON.stringify(checkRunnerAddress)}`);
  }
  if (controlPlanePort !== undefined || env.EC2_PARENT_ADDRESS || checkRunnerAddress === "false") {
    options.controlPlane = {
      ...(controlPlanePort !== undefined ? { port: controlPlanePort } : {}),
      ...(env.EC2_PARENT_ADDRESS ? { advertisedHost: env.EC2_PARENT_ADDRESS } : {}),
      ...(checkRunnerAddress === "false" ? { checkRunnerAddress: false } : {}),
    };
  }
  if (env.EC2_SPOT === "true") options.spot = true;
  // Runners get this parent's FLAME_BUILD_ID from the backend itself, so their app version matches.
  return options;
}

/**
 * KubernetesBackend reads POD_NAME, POD_NAMESPACE and POD_IP (the downward
 * API, set in infra/kubernetes/deployment.yaml) and the pod's service
 * account itself; outside a cluster, KUBECONFIG. Checked here so all the
 * missing ones are named at once.
 */
function kubernetesOptions(env: Env, problems: string[]): KubernetesBackendOptions {
  const image = env.KUBERNETES_RUNNER_IMAGE || undefined;
  const missing = ["POD_IP", ...(image ? [] : ["POD_NAME"])].filter((name) => !env[name]);
  if (missing.length > 0) {
    problems.push(
      `FLAME_BACKEND=kubernetes needs ${missing.join(" and ")}, from the downward API (see infra/kubernetes/deployment.yaml)` +
        `${image ? "" : ", or KUBERNETES_RUNNER_IMAGE for a parent outside a pod"}`,
    );
  }
  const command = runnerCommandWords(env, problems);
  const port = new Reader(env, problems).optionalInteger("KUBERNETES_LISTEN_PORT", 0, 65_535);
  return {
    ...(image ? { image, parentPod: false } : {}),
    ...(command ? { command } : {}),
    ...(port !== undefined ? { controlPlane: { port } } : {}),
  };
}

/**
 * RUNNER_COMMAND as a Fly `init.cmd` or a runner pod's `command`: a JSON array of words, or words
 * separated by spaces. Unset: FlyBackend's default (this node, its runner
 * agent and the pool's entry, at the paths they have in this process).
 */
function runnerCommandWords(env: Env, problems: string[]): string[] | undefined {
  const raw = env.RUNNER_COMMAND?.trim();
  if (!raw) return undefined;
  if (!raw.startsWith("[")) return raw.split(/\s+/);
  try {
    const words: unknown = JSON.parse(raw);
    if (Array.isArray(words) && words.length > 0 && words.every((word) => typeof word === "string")) return words as string[];
  } catch {
    // Reported below.
  }
  problems.push(`RUNNER_COMMAND must be words separated by spaces or a JSON array of strings, got ${JSON.stringify(raw)}`);
  return undefined;
}

/** Reads numeric variables, recording a problem (and returning the default) when one is malformed. */
class Reader {
  constructor(
    private readonly env: Env,
    private readonly problems: string[],
  ) {}

  integer(name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    return this.optionalInteger(name, min, max) ?? fallback;
  }

  optionalInteger(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const raw = this.env[name];
    if (raw === undefined || raw === "") return undefined;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      this.problems.push(`${name} must be an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? " up" : ` to ${max}`}, got ${JSON.stringify(raw)}`);
      return undefined;
    }
    return value;
  }
}
