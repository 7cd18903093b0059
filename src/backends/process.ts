/**
 * ProcessBackend: each runner is a child process on this machine running the
 * runner agent. The default backend: no cloud account needed, and what the
 * demo and most tests use.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { BackendError } from "../errors.js";
import { agentEntry } from "../package-paths.js";
import * as v from "valibot";
import { milliseconds, parseOptions } from "../validation.js";
import type { Backend, ListedRunner, ProvisionedRunner, ProvisionRequest } from "./backend.js";

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
}

const schema = v.strictObject({
  entry: v.optional(v.pipe(v.string(), v.minLength(1))),
  execPath: v.optional(v.pipe(v.string(), v.minLength(1))),
  execArgv: v.optional(v.array(v.string())),
  env: v.optional(v.record(v.string(), v.string())),
  killTimeout: v.optional(milliseconds(), 2_000),
});


/** Bytes of a runner's stderr kept to explain a crash before it connected. */
const STDERR_TAIL = 4_096;

interface LiveChild {
  child: ChildProcess;
  pool: string;
  parentId: string;
  exited: Promise<string>;
}

export class ProcessBackend implements Backend {
  readonly name = "process";
  private readonly options: v.InferOutput<typeof schema>;
  private readonly children = new Map<string, LiveChild>();

  constructor(options: ProcessBackendOptions = {}) {
    this.options = parseOptions("ProcessBackend", schema, options);
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedRunner> {
    const execPath = this.options.execPath ?? process.execPath;
    const entry = this.options.entry ?? request.entry ?? process.argv[1];
    const args = [...(this.options.execArgv ?? process.execArgv), agentEntry(), ...(entry ? [entry] : [])];
    const command = [execPath, ...args].join(" ");
    let child: ChildProcess;
    try {
      child = spawn(execPath, args, {
        env: { ...process.env, ...this.options.env, ...request.env },
        stdio: ["ignore", "ignore", "pipe"],
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
    let stderrTail = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL);
    });
    const exited = new Promise<string>((resolve) => {
      child.once("exit", (code, signal) => {
        const tail = stderrTail.trim();
        resolve(`process ${child.pid ?? "?"} exited with ${signal ?? `code ${code}`}${tail ? `; its last output:\n${tail}` : ""}`);
      });
    });
    try {
      // Node emits 'spawn' or 'error' on the next tick; whichever comes first says whether the process exists.
      await once(child, "spawn");
    } catch (error) {
      child.stderr?.destroy();
      throw spawnFailed(error, command);
    }
    spawned = true;
    // Only spawned children are tracked, so terminate() and list() never see one without a pid.
    const live: LiveChild = { child, pool: request.pool, parentId: request.parentId, exited };
    this.children.set(request.runnerId, live);
    void exited.then(() => this.children.delete(request.runnerId));
    // Children must not keep the parent's event loop alive on their own.
    child.unref();
    (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();
    return { runnerId: request.runnerId, providerId: String(child.pid), exited };
  }

  async terminate(runner: ProvisionedRunner): Promise<void> {
    const live = this.children.get(runner.runnerId);
    if (!live) return;
    const { child } = live;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), this.options.killTimeout);
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
