/**
 * Importing the app's entry module on a runner (its main thread, or each of
 * its worker threads): while it loads, a call the module makes at its top
 * level is refused as unguarded; the load is traced as a child of the boot's
 * span when the parent traces.
 */
import { pathToFileURL } from "node:url";
import { setLoadingEntry } from "../runtime.js";
import { recordEntryLoad } from "../observability/boot-trace.js";
import type { TraceContextCarrier } from "../protocol/messages.js";

export interface EntryLoadSettings {
  runnerId: string;
  pool: string;
  /** The boot span's trace context: the load becomes its child span. */
  traceContext?: TraceContextCarrier | undefined;
}

/** Imports `entryPath` (an absolute path or a file: URL); resolves with the failure's description, or undefined when it loaded. */
export async function loadEntry(entryPath: string | undefined, settings: EntryLoadSettings): Promise<string | undefined> {
  if (!entryPath) return undefined;
  const startedAt = performance.now();
  let failure: unknown;
  let failed = false;
  try {
    setLoadingEntry(true);
    await import(entryPath.startsWith("file:") ? entryPath : pathToFileURL(entryPath).href);
  } catch (thrown) {
    failure = thrown;
    failed = true;
  } finally {
    setLoadingEntry(false);
  }
  // The entry module is what registers the app's SDK: the load can only be recorded now it has returned.
  if (settings.traceContext) {
    const { runnerId, pool, traceContext } = settings;
    recordEntryLoad({ runnerId, pool, traceContext, startedAt, endedAt: performance.now(), ...(failed ? { error: failure } : {}) });
  }
  if (!failed) return undefined;
  const reason = failure as Error | undefined;
  return `the entry module ${entryPath} failed to load: ${reason?.stack ?? String(reason)}`;
}
