/**
 * Which module a pool's runners import: by default the module that
 * constructed the pool, found from the call site of `new Pool`. That module
 * defines the pool, so importing it on a runner defines the pool's functions
 * there too, whatever the process's main script is (an app's own module, a
 * test runner's worker, the CLI, or a runner making a nested call).
 */
import { isAbsolute, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { packageRoot } from "../package-paths.js";

/**
 * The file of the first stack frame outside flame-ts itself (its src/ or
 * dist/): the module whose code is running `new Pool`. Undefined when there is
 * no such file (a REPL, `node -e`).
 */
export function constructingModule(): string | undefined {
  const ownCode = [resolve(packageRoot(), "src"), resolve(packageRoot(), "dist")];
  const originalPrepare = Error.prepareStackTrace;
  const originalLimit = Error.stackTraceLimit;
  let frames: NodeJS.CallSite[] = [];
  try {
    Error.stackTraceLimit = 50;
    Error.prepareStackTrace = (_error, callSites) => callSites;
    const holder: { stack?: NodeJS.CallSite[] } = {};
    Error.captureStackTrace(holder, constructingModule);
    frames = holder.stack ?? [];
  } finally {
    Error.prepareStackTrace = originalPrepare;
    Error.stackTraceLimit = originalLimit;
  }
  for (const frame of frames) {
    const path = filePath(frame.getFileName() ?? undefined);
    if (!path || ownCode.some((directory) => path.startsWith(`${directory}/`))) continue;
    return path;
  }
  return undefined;
}

function filePath(fileName: string | undefined): string | undefined {
  if (!fileName) return undefined;
  if (fileName.startsWith("file:")) return fileURLToPath(fileName);
  return isAbsolute(fileName) ? fileName : undefined;
}

/**
 * The entry a pool's runners import: `entry` if given (a relative path is
 * resolved against the module that set it, not the working directory), else
 * the constructing module, else the parent's main script.
 */
export function resolveEntry(entry: string | undefined, constructedIn: string | undefined): string | undefined {
  if (entry === undefined) return constructedIn ?? process.argv[1];
  if (entry.startsWith("file:")) return fileURLToPath(entry);
  if (isAbsolute(entry)) return entry;
  return resolve(constructedIn ? dirname(constructedIn) : process.cwd(), entry);
}
