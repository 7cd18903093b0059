/** After every test, no process the test started may remain: runners must be cleaned up. */
import { afterEach, expect } from "vitest";
import { descendantPids, waitFor } from "./processes.js";

afterEach(async () => {
  // Terminated runners get a moment to finish exiting; anything still there after it leaked.
  await waitFor(() => descendantPids().length === 0, "child processes to exit", 3_000).catch(() => undefined);
  const left = descendantPids();
  if (left.length > 0) for (const pid of left) process.kill(pid, "SIGKILL");
  expect(left, "processes left behind by the test").toEqual([]);
});
