/**
 * ProcessBackend: each runner is a child process on this machine running the
 * runner agent. The default backend: no cloud account needed, and what the
 * demo and most tests use.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { BackendError } from "../errors.js";
import * as v from "valibot";
import { milliseconds, parseOptions } from "../validation.js";
import type { Backend, ListedRunner, ProvisionedRunner, ProvisionRequest } from "./backend.js";
import { loopbackAddress, type ControlPlaneAddress, type ControlPlaneTls } from "../control-plane/address.js";
import type { Writable } from "node:stream";
import { OUTPUT_CAPTURED_ENV, RUNNER_ENV_FD_VAR, RUNNER_ENV_VAR } from "../protocol/runner-env.js";

/** The runner's file descriptor its secret (FLAME_PARENT) arrives on. */
const SECRET_FD = 3;

/** The parent's environment without a runner secret of its own (a runner making nested calls has none left, but be sure). */
function withoutRunnerSecret(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { [RUNNER_ENV_VAR]: _secret, [RUNNER_ENV_FD_VAR]: _fd, ...rest } = env;
  return rest;
}
import { RunnerOutput } from "./process-output.js";
import { controlPlaneTlsSchema } from "./control-plane-options.js";
import { runnerCommand, runnerEnvironment } from "./runner-launch.js";

/** Options of `new ProcessBackend(options)`. */
export interface ProcessBackendOptions {
  /** Module runners import. Default: the pool's `entry` (by default the module that constructed the pool). */
  entry?: string;
  /** Node executable. Default: the parent's (process.execPath). */
  execPath?: string;
  /** Node flags for runners, e.g. ["--import", "tsx"]. Default: the parent's (process.execArgv), as child_process.fork does. */
  execArgv?: string[];
  /** Extra environment for runners, on top of the parent's own environment. */
  env?: Record<string, string>;
  /** Milliseconds between SIGTERM and SIGKILL when terminating. Default 2 000. */
  killTimeout?: number;
  /**
   * TLS on the parent's loopback listener, as remote backends have by default.
   * Default false: runners are on this machine and dial 127.0.0.1, where no one
   * on the network is between them and the parent, and clear is cheaper to start.
   * `true` (or your own `{ certificate, key, ca? }`) for a machine you share.
   */
  tls?: ControlPlaneTls;
}

const schema = v.strictObject({
  entry: v.optional(v.pipe(v.string(), v.minLength(1))),
  execPath: v.optional(v.pipe(v.string(), v.minLength(1))),
  execArgv: v.optional(v.array(v.string())),
  env: v.optional(v.record(v.string(), v.string())),
  killTimeout: v.optional(milliseconds(), 2_000),
  tls: controlPlaneTlsSchema(false),
});


interface LiveChild {
  child: ChildProcess;
  pool: string;
  parentId: string;
  exited: Promise<string>;
}

/** Runners as child processes of the parent, each in its own process group: the default backend. */
export class ProcessBackend implements Backend {
  readonly name = "process";
  private readonly options: v.InferOutput<typeof schema>;
  private readonly children = new Map<string, LiveChild>();

  constructor(options: ProcessBackendOptions = {}) {
    this.options = parseOptions("ProcessBackend", schema, options);
  }

  /** Loopback, in clear unless the `tls` option says otherwise. */
  controlPlane(): ControlPlaneAddress {
    return loopbackAddress(this.options.tls);
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedRunner> {
    const entry = this.options.entry ?? request.entry;
    const [execPath, ...args] = runnerCommand(entry, this.options);
    const command = [execPath, ...args].join(" ");
    // The runner's secret goes through an inherited pipe, not the environment: any process of
    // the same user can read another's environment (/proc/<pid>/environ), not its pipes.
    const { [RUNNER_ENV_VAR]: secret, ...publicEnv } = request.env;
    let child: ChildProcess;
    try {
      child = spawn(execPath, args, {
        // The parent's whole environment (a child process shares its machine), then the runner's own.
        env: {
          ...withoutRunnerSecret(process.env),
          ...runnerEnvironment({ env: publicEnv, entry }, { ...this.options.env, [OUTPUT_CAPTURED_ENV]: "1", [RUNNER_ENV_FD_VAR]: String(SECRET_FD) }),
        },
        stdio: ["ignore", "pipe", "pipe", "pipe"],
        // Its own process group: a Ctrl-C in the parent's terminal does not reach the runners,
        // which end through the pool (drained by stop()) or when their parent is gone.
        detached: true,
      });
    } catch (error) {
      // Node throws synchronously for some failures (ENOMEM, bad arguments) and reports the rest as 'error'.
      throw spawnFailed(error, command);
    }
    // Listen for 'error' before anything else: an 'error' with no listener is an uncaught exception
    // that takes the whole parent down. After the spawn, it means a failed kill, not an exit.
    let spawned = false;
    child.on("error", (error) => {
      if (spawned) request.log.warn({ err: error, runnerId: request.runnerId }, `runner process ${child.pid}: ${error.message}`);
    });
    // When the spawn fails for want of file descriptors (EMFILE, ENFILE), Node never creates the pipes.
    const output = new RunnerOutput(request.log, request.runnerId);
    output.read(child.stdout, "stdout");
    output.read(child.stderr, "stderr");
    const exited = new Promise<string>((resolve) => {
      child.once("exit", (code, signal) => {
        void output.lastOutput().then((tail) =>
          resolve(`process ${child.pid ?? "?"} exited with ${signal ?? `code ${code}`}${tail ? `; its last output:\n${tail}` : ""}`),
        );
      });
    });
    try {
      // Node emits 'spawn' or 'error' on the next tick; whichever comes first says whether the process exists.
      await once(child, "spawn");
    } catch (error) {
      output.destroy();
      throw spawnFailed(error, command);
    }
    spawned = true;
    const secretPipe = child.stdio[SECRET_FD] as Writable | null;
    secretPipe?.on("error", () => undefined);
    secretPipe?.end(secret ?? "");
    // Only spawned children are tracked, so terminate() and list() never see one without a pid.
    const live: LiveChild = { child, pool: request.pool, parentId: request.parentId, exited };
    this.children.set(request.runnerId, live);
    void exited.then(() => this.children.delete(request.runnerId));
    // Children must not keep the parent's event loop alive on their own.
    child.unref();
    return { runnerId: request.runnerId, providerId: String(child.pid), exited };
  }

  async terminate(runner: ProvisionedRunner): Promise<void> {
    const live = this.children.get(runner.runnerId);
    if (!live) return;
    const { child } = live;
    if (child.exitCode === null && child.signalCode === null) {
      signalGroup(child, "SIGTERM");
      const killer = setTimeout(() => signalGroup(child, "SIGKILL"), this.options.killTimeout);
      await live.exited;
      clearTimeout(killer);
    }
  }

  async list(filter: { pool?: string } = {}): Promise<ListedRunner[]> {
    return [...this.children.entries()]
      .filter(([, live]) => filter.pool === undefined || live.pool === filter.pool)
      .map(([runnerId, live]) => ({
        runnerId,
        providerId: String(live.child.pid),
        pool: live.pool,
        parentId: live.parentId,
        state: "running",
      }));
  }
}

/**
 * Signals the runner's whole process group (it leads its own, see provision), so
 * what its app code spawned goes with it; falls back to the process alone.
 */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    child.kill(signal);
  }
}

/**
 * Spawn failures that may clear up on their own (file descriptors, processes or
 * memory exhausted for now). Anything else (ENOENT, EACCES: a wrong execPath)
 * fails the same way every time.
 */
const TRANSIENT_SPAWN_ERRORS = new Set(["EMFILE", "ENFILE", "EAGAIN", "ENOMEM"]);

/** What to do about a spawn failure, where the errno alone does not say it. */
const SPAWN_HINTS: Record<string, string> = {
  ENOENT: "check the ProcessBackend execPath option",
  EACCES: "check the ProcessBackend execPath option",
  EMFILE: "the parent has too many open files: raise its limit (ulimit -n) or lower the pool's max",
  ENFILE: "the system has too many open files",
};

function spawnFailed(error: unknown, command: string): BackendError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const hint = code !== undefined ? SPAWN_HINTS[code] : undefined;
  const message = (error as Error | undefined)?.message ?? String(error);
  return new BackendError(`could not spawn a runner process (${command}): ${message}${hint ? ` (${hint})` : ""}`, {
    retryable: code !== undefined && TRANSIENT_SPAWN_ERRORS.has(code),
    cause: error,
  });
}
