/**
 * Files of this package that are found at run time (the runner agent's entry,
 * the repository's copy of Fly's spec). They are located from the package's
 * root, found by walking up from this module, because the built package is
 * bundled: a module's own location in dist/ says nothing about src/'s layout.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(import.meta.url);

/** Running from TypeScript sources (tests, tsx) rather than the built dist/. */
const fromSource = here.endsWith(".ts");

function findPackageRoot(start: string): string {
  let directory = dirname(start);
  for (;;) {
    const manifest = join(directory, "package.json");
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "flame-ts") return directory;
      } catch {
        // An unreadable package.json is not ours; keep walking.
      }
    }
    const parent = dirname(directory);
    if (parent === directory) throw new Error(`flame-ts cannot find its own package.json above ${start}`);
    directory = parent;
  }
}

let root: string | undefined;

/** The directory holding flame-ts' package.json. */
export function packageRoot(): string {
  return (root ??= findPackageRoot(here));
}

/** The runner agent's entry module: what a runner process runs. */
export function agentEntry(): string {
  return join(packageRoot(), fromSource ? "src/runner-agent/main.ts" : "dist/runner-agent/main.js");
}
