/**
 * The contract between a pool and the place its runners run. A backend sees
 * only runners' lifecycles, never calls: it starts a machine (or process) that
 * runs the runner agent with the given environment, stops it, and lists the
 * ones it started so a restarted parent can clean up after a crashed one.
 *
 * A new provider implements this in one file, with the shared pieces: the
 * runner's environment and command line (runner-launch.ts), the
 * `controlPlane` option (control-plane-options.ts), and retries (../retry.ts).
 */
import type { ControlPlaneAddress } from "../control-plane/address.js";
import type { Logger } from "../log.js";

export type { ControlPlaneAddress };

/** What a pool asks of a backend to start one runner. */
export interface ProvisionRequest {
  /** Unique id of the runner, chosen by the pool. Use it as an idempotency key. */
  runnerId: string;
  /** Pool name, for tags and metadata. */
  pool: string;
  /** Id of the parent process (stable for its lifetime), for tags and metadata. */
  parentId: string;
  /**
   * Environment the runner agent needs (FLAME_PARENT and friends). Holds the
   * runner's one-time token: put it only where the runner can read it.
   */
  env: Record<string, string>;
  /**
   * Module the runner agent imports so the pool's functions are defined: the
   * pool's `entry`, resolved once by the pool (by default the module that
   * constructed it). A backend's own `entry` option, if it has one, overrides it.
   */
  entry: string | undefined;
  /** Absolute deadline (ms since epoch) by which the runner must have connected. */
  deadline: number;
  /** Aborted when the pool gives up on this boot (stop, boot timeout): clean up and reject. */
  signal: AbortSignal;
  log: Logger;
}

/** What a backend returns for a started runner; passed back to `terminate`. */
export interface ProvisionedRunner {
  runnerId: string;
  /** The provider's id for it: a pid, a Fly machine id, an EC2 instance id. */
  providerId: string;
  /**
   * Settles when the runner is known to have stopped (process exited, machine
   * destroyed), with a description. Lets the pool fail a boot at once when the
   * runner crashes before connecting. Optional: remote backends may not know.
   */
  exited?: Promise<string>;
  /**
   * Rejects with a BackendError when the provider sees the runner fail
   * before it connects in a way it can name (an image that cannot be pulled,
   * a container that cannot be configured): the boot fails at once with it,
   * `retryable` included. Optional; never resolves.
   */
  failed?: Promise<never>;
  /**
   * The IP address the runner will connect from, when the provider knows it
   * (a pod IP, a machine's private IP). The control plane then takes the
   * runner's token from that address only, so a token someone else read
   * (from the environment, user data, a Secret) is refused from anywhere else
   * and no forged session can take the runner's place. Leave it unset where
   * connections arrive translated (NAT, a proxy or service mesh in between).
   */
  address?: string;
}

/** A runner the backend finds running, as returned by `list`. */
export interface ListedRunner {
  runnerId: string;
  providerId: string;
  pool: string;
  parentId: string;
  state: string;
}

/** Where runners run: a provider implements these few methods (see the file's header). */
export interface Backend {
  /** Short name for logs and errors, e.g. "process", "fly". */
  readonly name: string;

  /**
   * Where the parent must listen so this backend's runners can reach it (may
   * look it up, e.g. from instance metadata). Local backends leave it
   * undefined: loopback, ephemeral port.
   */
  controlPlane?(): ControlPlaneAddress | Promise<ControlPlaneAddress>;

  /**
   * The pool's `bootTimeout` when the user sets none, in ms: machines that take
   * minutes to boot (EC2) need more than the 30 s default.
   */
  readonly defaultBootTimeout?: number;

  /**
   * Verifies credentials and permissions before the first boot (e.g. an EC2
   * DryRun), throwing a BackendError that says what is missing. `pool.start()` calls it.
   */
  checkPermissions?(): Promise<void>;

  /**
   * Starts a runner. Resolves once the provider accepted it (not when it has
   * connected: the pool waits for the runner's hello). Throw a `BackendError`
   * with `retryable` set to say whether trying again may help.
   */
  provision(request: ProvisionRequest): Promise<ProvisionedRunner>;

  /** Stops a runner and makes sure it is gone. Idempotent: an unknown or gone runner is not an error. */
  terminate(runner: ProvisionedRunner): Promise<void>;

  /** Runners this backend started and that still exist, optionally for one pool only. */
  list(filter?: { pool?: string }): Promise<ListedRunner[]>;
}
