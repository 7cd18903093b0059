/**
 * FlyBackend's options: declared, documented, defaulted and validated here,
 * and turned into the Machines API's create request. Durations are in ms.
 */
import { InvalidOptionError } from "../../errors.js";
import * as v from "valibot";
import { milliseconds, parseOptions, positiveInteger } from "../../validation.js";
import type { ProvisionRequest } from "../backend.js";
import { controlPlaneSchema, type ControlPlaneOptions } from "../control-plane-options.js";
import { runnerCommand, runnerEnvironment } from "../runner-launch.js";

/** Signals Fly can send a machine to stop it. */
export type FlyStopSignal = "SIGHUP" | "SIGINT" | "SIGQUIT" | "SIGKILL" | "SIGUSR1" | "SIGUSR2" | "SIGTERM";

/** The size of a runner machine (Fly's `guest`). */
export interface FlyGuestOptions {
  /** "performance" or "shared". Default "performance". */
  cpuKind?: string;
  /** CPUs. Default 1. */
  cpus?: number;
  /** Memory in MB. Default 4096. */
  memoryMb?: number;
  /** GPU model, e.g. "a100-pcie-40gb". Default none. */
  gpuKind?: string;
  /** GPUs. Default none. */
  gpus?: number;
}

/** What a runner machine runs (Fly's `init`). */
export interface FlyInitOptions {
  /** Replaces the image's CMD. Default: the runner agent at the same paths as in the parent (see docs/fly.md). */
  cmd?: string[];
  /** Replaces the image's ENTRYPOINT. Default: the image's. */
  entrypoint?: string[];
  /** Replaces both ENTRYPOINT and CMD. Default: unset. */
  exec?: string[];
}

/**
 * An app secret a runner receives: its name (the environment variable has the
 * same name), or `{ envVar, name }` to set `envVar` from the app secret `name`.
 */
export type FlySecret = string | { envVar: string; name?: string };

/** Options of FlyBackend. Every one has a default; see docs/fly.md. */
export interface FlyBackendOptions {
  /** Machines API token. Default: env FLY_API_TOKEN. Never given to runners. */
  token?: string;
  /** App the runner machines are created in. Default: env FLY_APP_NAME (the parent's own app). */
  app?: string;
  /** Image runners boot from. Default: env FLY_IMAGE_REF (the parent's own image, so runners run the same build). */
  image?: string;
  /** Machines API base URL. Default: env FLY_API_HOSTNAME, else "https://api.machines.dev" (on Fly, "http://_api.internal:4280" also works). */
  baseUrl?: string;
  /** Region runners are created in. Default: env FLY_REGION (the parent's region); unset lets Fly choose. */
  region?: string;
  /** Size of a runner machine. */
  guest?: FlyGuestOptions;
  /** Environment of runners. Runners do not inherit the parent's environment: pass what app code needs here. */
  env?: Record<string, string>;
  /** What the machine runs. */
  init?: FlyInitOptions;
  /** Extra machine metadata (keys flame_pool, flame_parent, flame_runner are the backend's own). */
  metadata?: Record<string, string>;
  /** Fly services (raw Machines API objects) exposed by runners. Default none: runners dial out to the parent. */
  services?: Record<string, unknown>[];
  /** How Fly stops a runner machine: signal (Fly's default SIGINT) and ms before it kills (Fly's default 5 000). */
  stopConfig?: { signal?: FlyStopSignal; timeout?: number };
  /**
   * Which of the app's secrets Fly injects into runner machines. Default "none"
   * (`skip_secrets`): runners get none, so the Machines API token stored as the
   * app secret FLY_API_TOKEN stays out of runner code. A list: exactly those
   * (process-level `secrets` with `ignore_app_secrets`); it may not name
   * FLY_API_TOKEN. "all": every app secret, FLY_API_TOKEN included if it is one
   * (Fly's own default). Replaces `skipSecrets`.
   */
  secrets?: "none" | "all" | FlySecret[];
  /**
   * Where the parent listens and what runners dial. Defaults: `host` "::"
   * (every interface, including Fly's private IPv6 network), `port` 0 (any
   * free port), `advertisedHost` env FLY_PRIVATE_IP (the parent machine's
   * address on Fly's private network).
   */
  controlPlane?: ControlPlaneOptions;
  /** Longest one API request may take, and the retry budget of a destroy or list, in ms. Default 30 000. Creates are bounded by the pool's bootTimeout. */
  requestTimeout?: number;
}

const stringList = v.array(v.string());
const nonEmpty = v.pipe(v.string(), v.minLength(1));
const environmentVariableName = v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "Expected an environment variable name"));
/** The app secret the README's set-up stores the Machines API token in. */
export const API_TOKEN_SECRET = "FLY_API_TOKEN";
const secretSchema = v.pipe(
  v.union([environmentVariableName, v.strictObject({ envVar: environmentVariableName, name: v.optional(nonEmpty) })]),
  v.transform((secret) => (typeof secret === "string" ? { envVar: secret, name: secret } : { envVar: secret.envVar, name: secret.name ?? secret.envVar })),
  v.check(
    (secret) => secret.name !== API_TOKEN_SECRET,
    `names the app secret ${API_TOKEN_SECRET}, the Machines API token: runner code could then create and destroy the app's machines. ` +
      `Give runners a separate, narrower token under another secret name ({ envVar: "${API_TOKEN_SECRET}", name: "RUNNER_FLY_API_TOKEN" }), or use secrets: "all" to hand them every app secret knowingly`,
  ),
);
const signals = ["SIGHUP", "SIGINT", "SIGQUIT", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGTERM"] as const;

const schema = v.strictObject({
  token: v.optional(nonEmpty),
  app: v.optional(nonEmpty),
  image: v.optional(nonEmpty),
  baseUrl: v.optional(v.pipe(v.string(), v.url())),
  region: v.optional(nonEmpty),
  guest: v.optional(
    v.strictObject({
      cpuKind: v.optional(nonEmpty, "performance"),
      cpus: v.optional(positiveInteger(), 1),
      memoryMb: v.optional(positiveInteger(), 4_096),
      gpuKind: v.optional(nonEmpty),
      gpus: v.optional(positiveInteger()),
    }),
    {},
  ),
  env: v.optional(v.record(v.string(), v.string()), {}),
  init: v.optional(
    v.strictObject({
      cmd: v.optional(v.pipe(stringList, v.minLength(1))),
      entrypoint: v.optional(stringList),
      exec: v.optional(v.pipe(stringList, v.minLength(1))),
    }),
    {},
  ),
  metadata: v.optional(v.record(v.string(), v.string()), {}),
  services: v.optional(v.array(v.record(v.string(), v.unknown())), []),
  stopConfig: v.optional(v.strictObject({ signal: v.optional(v.picklist(signals)), timeout: v.optional(milliseconds()) })),
  secrets: v.optional(v.union([v.picklist(["none", "all"]), v.array(secretSchema)]), "none"),
  controlPlane: controlPlaneSchema({ host: "::", port: 0 }),
  requestTimeout: v.optional(v.pipe(milliseconds(), v.minValue(1)), 30_000),
});

/**
 * Options after validation and defaults.
 * @internal
 */
export type ResolvedFlyOptions = v.InferOutput<typeof schema> & {
  baseUrl: string;
  /** Where `token` came from, for messages that must not show it. */
  tokenSource: string;
};

/** The public Machines API. */
export const DEFAULT_BASE_URL = "https://api.machines.dev";

/**
 * Validates `input` and fills defaults from the environment. Required values
 * (token, app, image) may still be missing: a pool built on a runner
 * constructs its backend too and never uses it, so absence is reported on use.
 * @internal
 */
export function resolveFlyOptions(input: FlyBackendOptions, env: NodeJS.ProcessEnv = process.env): ResolvedFlyOptions {
  if (input && Object.hasOwn(input, "skipSecrets")) {
    throw new InvalidOptionError(
      'invalid FlyBackend option "skipSecrets": it was removed. Runners now get no app secret by default (secrets: "none", which is what skipSecrets: true did); ' +
        'name the ones they need (secrets: ["DATABASE_URL"]), or use secrets: "all" for what skipSecrets: false did (FLY_API_TOKEN included, if it is an app secret)',
    );
  }
  const parsed = parseOptions("FlyBackend", schema, input ?? {});
  const baseUrl = parsed.baseUrl ?? baseUrlFromEnvironment(env.FLY_API_HOSTNAME);
  return {
    ...parsed,
    token: parsed.token ?? (env.FLY_API_TOKEN || undefined),
    tokenSource: parsed.token !== undefined ? 'the FlyBackend "token" option' : "FLY_API_TOKEN",
    app: parsed.app ?? (env.FLY_APP_NAME || undefined),
    image: parsed.image ?? (env.FLY_IMAGE_REF || undefined),
    region: parsed.region ?? (env.FLY_REGION || undefined),
    baseUrl,
    controlPlane: {
      ...parsed.controlPlane,
      advertisedHost: parsed.controlPlane.advertisedHost ?? (env.FLY_PRIVATE_IP || undefined),
    },
  };
}

/** FLY_API_HOSTNAME as a base URL; Fly's docs give it with a scheme, a bare host gets the one it needs. */
function baseUrlFromEnvironment(hostname: string | undefined): string {
  if (!hostname) return DEFAULT_BASE_URL;
  const url = /^https?:\/\//.test(hostname) ? hostname : `${hostname.startsWith("_api.internal") ? "http" : "https"}://${hostname}`;
  if (!URL.canParse(url)) throw new InvalidOptionError(`invalid FlyBackend base URL from FLY_API_HOSTNAME: ${JSON.stringify(hostname)}`);
  return url;
}


/** Metadata keys the backend writes on every runner machine and lists by. */
export const METADATA = { pool: "flame_pool", parent: "flame_parent", runner: "flame_runner" } as const;

/** A Fly machine name for a runner: lowercase letters, digits and dashes. */
export function machineName(runnerId: string): string {
  return `flame-${runnerId}`.toLowerCase().replace(/[^a-z0-9-]+/g, "-").slice(0, 63).replace(/-+$/, "");
}

/**
 * Body of `POST /v1/apps/{app}/machines` for one runner.
 * @internal
 */
export function createMachineRequest(options: ResolvedFlyOptions & { image: string }, request: ProvisionRequest): Record<string, unknown> {
  const { guest, init, stopConfig } = options;
  const config: Record<string, unknown> = {
    image: options.image,
    auto_destroy: true,
    restart: { policy: "no" },
    guest: {
      cpu_kind: guest.cpuKind,
      cpus: guest.cpus,
      memory_mb: guest.memoryMb,
      ...(guest.gpuKind !== undefined ? { gpu_kind: guest.gpuKind } : {}),
      ...(guest.gpus !== undefined ? { gpus: guest.gpus } : {}),
    },
    // FLAME_PARENT, FLAME_ENTRY, FLAME_BUILD_ID and the user's env: never the API token. The parent's
    // FLY_IMAGE_REF, the other half of its app version, reaches runners through their image.
    env: runnerEnvironment(request, options.env),
    init: {
      // By default the parent's node, flags and agent path, which exist on a machine booted from the parent's image.
      ...(init.exec ? { exec: init.exec } : { cmd: init.cmd ?? runnerCommand(request.entry) }),
      ...(init.entrypoint ? { entrypoint: init.entrypoint } : {}),
    },
    metadata: {
      ...options.metadata,
      [METADATA.pool]: request.pool,
      [METADATA.parent]: request.parentId,
      [METADATA.runner]: request.runnerId,
    },
  };
  if (options.services.length > 0) config.services = options.services;
  // Fly injects every app secret unless told otherwise; a list replaces them with exactly those (the spec's MachineProcess).
  if (Array.isArray(options.secrets) && options.secrets.length > 0) {
    config.processes = [{ ignore_app_secrets: true, secrets: options.secrets.map(({ envVar, name }) => ({ env_var: envVar, ...(name !== envVar ? { name } : {}) })) }];
  }
  if (stopConfig) {
    config.stop_config = {
      ...(stopConfig.signal ? { signal: stopConfig.signal } : {}),
      ...(stopConfig.timeout !== undefined ? { timeout: goDuration(stopConfig.timeout) } : {}),
    };
  }
  return {
    name: machineName(request.runnerId),
    ...(options.region ? { region: options.region } : {}),
    ...(options.secrets === "none" || options.secrets.length === 0 ? { skip_secrets: true } : {}),
    config,
  };
}

/** Milliseconds as a Go duration string, which is what Fly parses: 5000 -> "5s", 1500 -> "1500ms". */
export function goDuration(ms: number): string {
  const rounded = Math.round(ms);
  return rounded % 1_000 === 0 ? `${rounded / 1_000}s` : `${rounded}ms`;
}
