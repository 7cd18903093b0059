import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { TSX_EXEC_ARGV } from "./support/backends.js";

const README = fileURLToPath(new URL("../README.md", import.meta.url));
// Inside the repository, so `flame-ts` resolves through its tsconfig path mapping; git-ignored.
// A folder of its own: test/.generated/ also holds the runners' copy of the sources (runner-mirror.ts).
const GENERATED = fileURLToPath(new URL("./.generated/readme/", import.meta.url));

/** The first ```ts block after `heading` in the README. */
function snippetAfter(heading: string): string {
  const readme = readFileSync(README, "utf8");
  const section = readme.slice(readme.indexOf(heading));
  const match = /```ts\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error(`no TypeScript block after "${heading}" in the README`);
  return match[1]!;
}

afterAll(() => rmSync(GENERATED, { recursive: true, force: true }));

describe("the README's examples run", () => {
  it("the quick start runs as written: a runner boots, the calls return, the pool stops", async () => {
    mkdirSync(GENERATED, { recursive: true });
    const file = `${GENERATED}quick-start.ts`;
    writeFileSync(file, snippetAfter("## Quick start"));
    const { stdout } = await promisify(execFile)(process.execPath, [...TSX_EXEC_ARGV, file], {
      env: { ...process.env, FLAME_LOG_LEVEL: "warn" },
      timeout: 20_000,
    });
    expect(stdout).toMatch(/\{ pixels: 65536, renderedBy: 'thumbs-[^']+' \}/);
  });
});
