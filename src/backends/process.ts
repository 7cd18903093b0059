/**
 * ProcessBackend: each runner is a child process on this machine running the
 * runner agent. The default backend: no cloud account needed, and what the
 * demo and most tests use.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { BackendError } from "../errors.js";
import { agentEntry } from "../package-paths.js";
import * as v from "valibot";
import { parseOptions } from "../validation.js";
import type { Backend, ListedRunner, ProvisionedRunner, ProvisionRequest } from "./backend.js";

export interface ProcessBackendOptions {
  /** Module runners import. Default: the pool's `entry`, else the parent's main module (process.argv[1]). */
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
  killTimeout: v.optional(v.pipe(v.number(), v.minValue(0)), 2_000),
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
    const entry = this.options.entry ?? request.entry ?? process.argv[1];
    const args = [...(this.options.execArgv ?? process.execArgv), agentEntry(), ...(entry ? [entry] : [])];
    let child: ChildProcess;
    try {
      child = spawn(this.options.execPath ?? process.execPath, args, {
        env: { ...process.env, ...this.options.env, ...request.env },
        stdio: ["ignore", "ignore", "pipe"],
      });
    } catch (error) {
      throw new BackendError(`could not spawn a runner process: ${(error as Error).message}`, { retryable: false, cause: error });
    }
    let stderrTail = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL);
    });
    const exited = new Promise<string>((resolve) => {
      child.once("error", (error) => resolve(`could not start: ${error.message}`));
      child.once("exit", (code, signal) => {
        const tail = stderrTail.trim();
        resolve(`process ${child.pid ?? "?"} exited with ${signal ?? `code ${code}`}${tail ? `; its last output:\n${tail}` : ""}`);
      });
    });
    const live: LiveChild = { child, pool: request.pool, parentId: request.parentId, exited };
    this.children.set(request.runnerId, live);
    void exited.then(() => this.children.delete(request.runnerId));
    // Children must not keep the parent's event loop alive on their own.
    child.unref();
    (child.stderr as unknown as { unref?: () => void }).unref?.();
    return { runnerId: request.runnerId, providerId: String(child.pid ?? "unknown"), exited };
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
