import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { TSX_EXEC_ARGV } from "../support/backends.js";

const cli = fileURLToPath(new URL("../../src/cli.ts", import.meta.url));
const README = fileURLToPath(new URL("../../README.md", import.meta.url));
// Inside the repository, so `flame-ts` resolves through the tsconfig path mapping; git-ignored.
const GENERATED = fileURLToPath(new URL("../.generated/cli-entry/", import.meta.url));

afterAll(() => rmSync(GENERATED, { recursive: true, force: true }));

describe("doctor --entry loads the app's module as a runner would", () => {
  it("checks the README quick start's pool without running the app (its calls are isRunner()-guarded)", async () => {
    mkdirSync(GENERATED, { recursive: true });
    const readme = readFileSync(README, "utf8");
    const snippet = /```ts\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf("## Quick start")))![1]!;
    const app = `${GENERATED}app.ts`;
    // Had the guarded block run, it would print the render's result and boot a runner.
    writeFileSync(app, snippet);
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...TSX_EXEC_ARGV, cli, "doctor", "--entry", app], {
      timeout: 20_000,
    });
    expect(stdout).toContain('process backend, pool "thumbs"');
    expect(stdout).toContain("all checks passed");
    expect(stdout + stderr).not.toContain("pixels");
  });
});
