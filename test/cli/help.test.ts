import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { fromCopy } from "../support/backends.js";

const cli = fileURLToPath(new URL("../../src/cli.ts", import.meta.url));

describe("every command answers --help", () => {
  it.each(["runner", "reap", "doctor", "fly-emulator"])("flame-ts %s --help prints its usage and exits 0", async (command) => {
    const { stdout } = await promisify(execFile)(process.execPath, [...fromCopy(cli), command, "--help"], {
      env: { ...process.env, FLAME_PARENT: "" },
      timeout: 20_000,
    });
    expect(stdout).toContain(`Usage: flame-ts ${command}`);
  });
});
