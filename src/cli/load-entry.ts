/**
 * Loading an app's entry module for the CLI's doctor and reap, as a runner
 * would: `isRunner()` is true while it loads, so the app's parent-only code
 * (its web server, its own calls) does not run and its pools stay empty.
 *
 * A TypeScript entry (`.ts`, `.mts`, `.cts`) loads as is where Node strips
 * types itself, or where a loader is already active (`node --import tsx`);
 * otherwise the app's own `tsx`, if installed, is registered for it.
 */
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { markAsInspecting } from "../runtime.js";

const TYPESCRIPT = /\.[cm]?ts$/;

export async function loadEntry(entry: string): Promise<void> {
  const path = isAbsolute(entry) ? entry : resolve(entry);
  const url = pathToFileURL(path).href;
  markAsInspecting();
  try {
    await import(url);
  } catch (error) {
    if (!TYPESCRIPT.test(path) || (error as NodeJS.ErrnoException).code !== "ERR_UNKNOWN_FILE_EXTENSION") throw error;
    await registerTypeScriptLoader(path);
    // Node remembers the failed load of this URL: a query makes it load afresh (nothing of it ran).
    await import(`${url}?typescript`);
  }
}

/**
 * Registers tsx from the app's own dependencies, found from the entry's
 * directory. Its ES module API is located through tsx's package.json: a
 * require-resolution would find the CommonJS build, which cannot be imported.
 */
async function registerTypeScriptLoader(entryPath: string): Promise<void> {
  let api: string;
  try {
    const manifestPath = createRequire(entryPath).resolve("tsx/package.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as { exports?: Record<string, { import?: string | { default?: string } }> };
    const target = manifest.exports?.["./esm/api"]?.import;
    const file = typeof target === "string" ? target : target?.default;
    if (!file) throw new Error("tsx has no ES module API");
    api = join(dirname(manifestPath), file);
  } catch {
    throw new Error(
      `${entryPath} is TypeScript and no TypeScript loader is available: install tsx in the app (npm install -D tsx), run the command with "node --import tsx", or point --entry at the built JavaScript`,
    );
  }
  const { register } = (await import(pathToFileURL(api).href)) as { register: () => unknown };
  register();
}
