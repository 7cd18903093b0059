/**
 * No process a test started may remain: runners must be cleaned up. Checked
 * after every test, except in files that keep a pool across tests (they call
 * `keepProcessesAcrossTests()`), where it is checked after the whole file.
 */
import { afterAll, afterEach, expect } from "vitest";
import { descendantPids, waitFor } from "./processes.js";

let perTest = true;

/** For files whose pool lives from beforeAll to afterAll. */
export function keepProcessesAcrossTests(): void {
  perTest = false;
}

async function expectNoLeftovers(): Promise<void> {
  // Terminated runners get a moment to finish exiting; anything still there after it leaked.
  await waitFor(() => descendantPids().length === 0, "child processes to exit", 3_000).catch(() => undefined);
  const left = descendantPids();
  for (const pid of left) process.kill(pid, "SIGKILL");
  expect(left, "processes left behind").toEqual([]);
}

afterEach(async () => {
  if (perTest) await expectNoLeftovers();
});

afterAll(expectNoLeftovers);
