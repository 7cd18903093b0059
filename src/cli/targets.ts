/**
 * Which backends a `reap` or `doctor` run works on: the pools an app's entry
 * module defines (their exact configuration, the recommended way), or one
 * backend built from the environment.
 */
import type { Backend } from "../backends/backend.js";
import { registeredPools } from "../runtime.js";
import { loadEntry } from "./load-entry.js";

export interface Target {
  /** Pool name, or undefined for "every pool on this backend". */
  pool: string | undefined;
  backend: Backend;
}

export interface TargetArgs {
  entry?: string | undefined;
  backend?: string | undefined;
  pool?: string | undefined;
}

export const TARGET_USAGE = `  --entry <module>    the app module that defines the pools (their backends are used as configured)
  --backend <name>    or one backend configured from the environment: fly (FLY_API_TOKEN, FLY_APP_NAME,
                      FLY_IMAGE_REF, ...), ec2 (AWS_REGION and the AWS SDK's credentials) or kubernetes
                      (the pod's service account or KUBECONFIG; POD_NAMESPACE, POD_NAME, POD_IP)
  --pool <name>       only this pool`;

export async function resolveTargets(args: TargetArgs): Promise<Target[]> {
  if (Boolean(args.entry) === Boolean(args.backend)) throw new Error("give exactly one of --entry and --backend");
  if (args.backend) return [{ pool: args.pool, backend: await backendFromEnvironment(args.backend) }];
  const entry = args.entry!;
  await loadEntry(entry);
  const pools = registeredPools();
  const chosen = args.pool ? pools.filter((pool) => pool.name === args.pool) : pools;
  if (chosen.length === 0) {
    throw new Error(args.pool ? `${entry} defines no pool named "${args.pool}"` : `${entry} defines no pool`);
  }
  return chosen.map((pool) => ({ pool: pool.name, backend: pool.backend }));
}

/**
 * The backend classes come from the public entry, as an app gets them: a
 * dynamic import of a backend's own module would make esbuild split its
 * shell out of dist/index.js into a chunk of its own, one more file that
 * every runner loads on its cold start.
 */
async function backendFromEnvironment(name: string): Promise<Backend> {
  switch (name) {
    case "fly": {
      const { FlyBackend } = await import("../index.js");
      return new FlyBackend();
    }
    case "ec2": {
      const { Ec2Backend } = await import("../index.js");
      // Listing and terminating never run a runner: the runner command is a placeholder the backend requires.
      return new Ec2Backend({ runnerCommand: "flame-ts runner", ...(process.env.AWS_ENDPOINT_URL ? { endpoint: process.env.AWS_ENDPOINT_URL } : {}) });
    }
    case "kubernetes": {
      const { KubernetesBackend } = await import("../index.js");
      return new KubernetesBackend();
    }
    default:
      throw new Error(`unknown backend "${name}": use fly, ec2 or kubernetes, or --entry for any other`);
  }
}
