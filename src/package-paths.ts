/**
 * Files of this package that are found at run time (the runner agent's entry,
 * the repository's copy of Fly's spec). They are located from the package's
 * root, found by walking up from this module, because the built package is
 * bundled: a module's own location in dist/ says nothing about src/'s layout.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = fileURLToPath(import.meta.url);

/** Running from TypeScript sources (tests, tsx) rather than the built dist/. */
const fromSource = here.endsWith(".ts");

/** A package.json found walking up; `manifest` is undefined when it could not be parsed. */
export interface FoundManifest {
  directory: string;
  manifest: { name?: string; version?: string } | undefined;
}

/** The package.json files in `directory` and its ancestors, nearest first. */
export function* packageManifestsAbove(directory: string): Generator<FoundManifest> {
  for (;;) {
    const path = join(directory, "package.json");
    if (existsSync(path)) {
      let manifest: FoundManifest["manifest"];
      try {
        manifest = JSON.parse(readFileSync(path, "utf8")) as FoundManifest["manifest"];
      } catch {
        manifest = undefined;
      }
      yield { directory, manifest };
    }
    const parent = dirname(directory);
    if (parent === directory) return;
    directory = parent;
  }
}

function findPackageRoot(start: string): string {
  for (const { directory, manifest } of packageManifestsAbove(dirname(start))) {
    if (manifest?.name === "flame-ts") return directory;
  }
  throw new Error(`flame-ts cannot find its own package.json above ${start}`);
}

let root: string | undefined;

/** The directory holding flame-ts' package.json. */
export function packageRoot(): string {
  return (root ??= findPackageRoot(here));
}

/**
 * What each worker thread of a runner runs (pool option `runnerThreads`):
 * the built thread module, or, from the TypeScript sources (the test suite),
 * a bootstrap that imports them through tsx's API: on Node 20, tsx's
 * `--import` hooks apply to the main thread only.
 */
export function threadEntry(): { script: URL | string; eval: boolean } {
  if (!fromSource) return { script: pathToFileURL(join(packageRoot(), "dist/runner-agent/threads/thread-main.js")), eval: false };
  const source = pathToFileURL(join(packageRoot(), "src/runner-agent/threads/thread-main.ts")).href;
  return { script: `import("tsx/esm/api").then((tsx) => tsx.tsImport(${JSON.stringify(source)}, ${JSON.stringify(source)}))`, eval: true };
}

/** The runner agent's entry module: what a runner process runs. */
export function agentEntry(): string {
  return join(packageRoot(), fromSource ? "src/runner-agent/main.ts" : "dist/runner-agent/main.js");
}
