import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { fromCopy } from "../support/backends.js";
import { isAlive, waitFor } from "../support/processes.js";

const script = fileURLToPath(new URL("../support/forgetful-script.ts", import.meta.url));

async function runForgetful(min: number, backend: "process" | "local") {
  const startedAt = Date.now();
  const { stdout } = await promisify(execFile)(process.execPath, [...fromCopy(script), String(min), backend], { timeout: 20_000 });
  return { elapsed: Date.now() - startedAt, pid: (JSON.parse(stdout.trim()) as { pid: number }).pid };
}

describe("a script whose work is done exits on its own, even without stop()", () => {
  it.each([0, 1])("with min %i on child-process runners; the runner goes with it", async (min) => {
    const { elapsed, pid } = await runForgetful(min, "process");
    // Far below the 30 s idle shutdown that used to hold it.
    expect(elapsed).toBeLessThan(10_000);
    await waitFor(() => !isAlive(pid), "the runner of the exited script to exit", 5_000);
  });

  it("with in-process runners", async () => {
    const { elapsed } = await runForgetful(1, "local");
    expect(elapsed).toBeLessThan(10_000);
  });
});
