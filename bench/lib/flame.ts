/**
 * The package under test, as users get it: the built `dist/`, loaded at run
 * time (the type checker sees the same API through the `flame-ts` path
 * mapping to src). Runners are plain `node` processes loading a plain
 * JavaScript app, as in production: no TypeScript loader in them.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type * as FlameModule from "flame-ts";
import type { DefinedFunction, Pool, PoolOptions } from "flame-ts";

export type Flame = typeof FlameModule;

const DIST = new URL("../../dist/", import.meta.url);
const APP = new URL("../fixtures/app.mjs", import.meta.url);

/** The benchmark functions the fixture app defines (see bench/fixtures/app.mjs). */
export interface BenchFunctions {
  noop: DefinedFunction<() => undefined>;
  /** Returns its argument (generic in the app; the benchmark sends Buffers). */
  echo: DefinedFunction<(value: Uint8Array) => Uint8Array>;
  burn: DefinedFunction<(iterations: number) => number>;
  startup: DefinedFunction<() => { execArgv: string[]; nodeOptions: string }>;
  /** The runner's process id, whichever of its threads runs the call. */
  pid: DefinedFunction<() => number>;
}

interface BenchApp {
  benchEntry: string;
  defineBenchFunctions(pool: Pool): BenchFunctions;
}

/** The built package and the benchmark app, loaded once. */
export interface FlameUnderTest {
  flame: Flame;
  /** A pool of runners started like production runners: `node dist/runner-agent/main.js bench/fixtures/app.mjs`. */
  makePool(options: Omit<PoolOptions, "entry" | "backend" | "log"> & Partial<Pick<PoolOptions, "backend">>): { pool: Pool } & BenchFunctions;
  /** Whether a built module exists, e.g. "backends/fly.js". */
  hasModule(path: string): boolean;
  /** Imports a built module by its path under dist/. */
  importModule<T>(path: string): Promise<T>;
  entry: string;
}

export async function loadFlame(): Promise<FlameUnderTest> {
  const index = new URL("index.js", DIST);
  if (!existsSync(index)) throw new Error(`${fileURLToPath(index)} is missing: run \`npm run build\` first (npm run bench does)`);
  const flame = (await import(index.href)) as Flame;
  const app = (await import(APP.href)) as BenchApp;
  return {
    flame,
    entry: app.benchEntry,
    makePool(options) {
      const pool = new flame.Pool({
        backend: new flame.ProcessBackend({ execArgv: [] }),
        ...options,
        entry: app.benchEntry,
        log: false,
      });
      return { pool, ...app.defineBenchFunctions(pool) };
    },
    hasModule: (path) => existsSync(new URL(path, DIST)),
    importModule: async <T>(path: string) => (await import(new URL(path, DIST).href)) as T,
  };
}
