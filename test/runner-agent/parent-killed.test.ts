import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { fromCopy } from "../support/backends.js";
import { isAlive, waitFor } from "../support/processes.js";

const parentScript = new URL("../support/parent-process.ts", import.meta.url).pathname;

describe("runners never outlive their parent", () => {
  it("every runner exits promptly when the parent is killed with SIGKILL", async () => {
    const parent = spawn(process.execPath, [...fromCopy(parentScript), "2"], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: parent.stdout! }).once("line", resolve);
        parent.once("exit", (code) => reject(new Error(`parent exited early with ${code}`)));
      });
      const { pids } = JSON.parse(line) as { pids: number[] };
      expect(pids).toHaveLength(2);
      expect(pids.every(isAlive)).toBe(true);

      const killedAt = Date.now();
      parent.kill("SIGKILL");
      await waitFor(() => pids.every((pid) => !isAlive(pid)), "runners to exit after their parent died", 5_000);
      expect(Date.now() - killedAt).toBeLessThan(3_000);
    } finally {
      parent.kill("SIGKILL");
    }
  });
});
