/**
 * flame-ts as a user gets it: built and packed (`npm run build`, `npm pack`)
 * from a staging copy of the repository, then installed into an app in the
 * system's temp directory, where no repository file is reachable.
 *
 * The tarball is built once per content of the sources and shared by every
 * test file of a run (and by later runs): files race for a lock directory, the
 * winner builds, the others wait for its tarball. The repository's own dist/
 * (which benchmarks and developers use) is left alone.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { waitFor } from "./processes.js";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
/** Bounds on the slow steps, in ms: a build, an install from the registry. */
export const BUILD_TIMEOUT = 240_000;
export const INSTALL_TIMEOUT = 180_000;

/**
 * This process's environment for commands run on behalf of another app:
 * without what `npm test` tells its scripts about flame-ts' own package, and
 * without variables that would point the app back at this repository.
 */
export function appEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^npm_(lifecycle_|package_|command$|config_call$|config_local_prefix$)/i.test(name)) delete env[name];
  }
  for (const name of ["FLY_OPENAPI_SPEC", "NODE_OPTIONS", "FLAME_LOG_LEVEL", "FLAME_BUILD_ID", "VITEST", "VITEST_WORKER_ID", "VITEST_POOL_ID", "TEST"]) delete env[name];
  return { ...env, ...extra };
}

/** Runs a command to its end within `timeout` ms; rejects with its output if it fails. */
export async function run(command: string, args: string[], cwd: string, timeout: number, env = appEnvironment()): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(command, args, { cwd, env, timeout, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failed = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`${command} ${args.join(" ")} failed in ${cwd}: ${failed.message}\n${failed.stdout ?? ""}${failed.stderr ?? ""}`);
  }
}

/** Whether the npm registry answers: install-heavy tests skip, saying so, when it does not. */
export async function registryReachable(what: string): Promise<boolean> {
  try {
    await run("npm", ["ping"], tmpdir(), 20_000);
    return true;
  } catch (error) {
    console.warn(`skipping ${what}: the npm registry is unreachable (${(error as Error).message.split("\n")[0]})`);
    return false;
  }
}

/** What the build reads, and what the package ships besides dist/. */
function packageSources(): string[] {
  const manifest = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { files: string[] };
  return ["package.json", "tsconfig.json", "tsconfig.build.json", "src", ...manifest.files.filter((entry) => entry !== "dist")].filter((entry) =>
    existsSync(join(REPO, entry)),
  );
}

function* filesUnder(path: string): Generator<string> {
  if (statSync(path).isDirectory()) {
    for (const entry of readdirSync(path).sort()) yield* filesUnder(join(path, entry));
  } else {
    yield path;
  }
}

/** A digest of every source file's path and content: a changed source means a new tarball. */
function sourcesDigest(sources: string[]): string {
  const hash = createHash("sha256");
  for (const entry of sources) {
    for (const file of filesUnder(join(REPO, entry))) hash.update(relative(REPO, file)).update("\0").update(readFileSync(file)).update("\0");
  }
  return hash.digest("hex").slice(0, 16);
}

/** The packed package of the current sources; resolves with the tarball's path. */
export async function packedTarball(): Promise<string> {
  const sources = packageSources();
  const cache = join(tmpdir(), `flame-ts-pack-${sourcesDigest(sources)}`);
  const done = join(cache, "tarball-path");
  const lock = join(cache, "lock");
  mkdirSync(cache, { recursive: true });
  if (existsSync(done)) return readFileSync(done, "utf8");
  try {
    mkdirSync(lock);
  } catch {
    // Another test file builds it: wait for its tarball.
    await waitFor(() => existsSync(done), "another test file to pack flame-ts", BUILD_TIMEOUT);
    return readFileSync(done, "utf8");
  }
  try {
    const stage = mkdtempSync(join(cache, "stage-"));
    for (const entry of sources) cpSync(join(REPO, entry), join(stage, entry), { recursive: true });
    symlinkSync(join(REPO, "node_modules"), join(stage, "node_modules"));
    await run("npm", ["run", "build", "--silent"], stage, BUILD_TIMEOUT);
    const output = await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", cache], stage, 60_000);
    const [pack] = JSON.parse(output) as Array<{ filename: string }>;
    rmSync(stage, { recursive: true, force: true });
    const tarball = join(cache, pack!.filename);
    writeFileSync(done, tarball);
    return tarball;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/**
 * A new app under the system's temp directory with the packed flame-ts (and
 * `dependencies`) installed. Its package.json has no "type": a CommonJS
 * project, as `npm init -y` makes; ESM files use .mjs.
 */
export async function appWithPackage(name: string, dependencies: string[] = []): Promise<string> {
  const tarball = await packedTarball();
  const app = mkdtempSync(join(tmpdir(), `${name}-`));
  writeFileSync(join(app, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true }, null, 2));
  await run("npm", ["install", tarball, ...dependencies, "--no-audit", "--no-fund", "--prefer-offline"], app, INSTALL_TIMEOUT);
  return app;
}
