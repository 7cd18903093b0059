/**
 * The type check, as one test of the suite: it runs beside the other files
 * instead of before them all, and a type error fails `npm test` with tsc's
 * own report. It is incremental, with its build info under
 * node_modules/.cache: the first run of a checkout takes about 12 s of one
 * core, a run after it (the next `npm test`, CI's next Node version) about 5 s.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const TSC = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url));
const BUILD_INFO = fileURLToPath(new URL("../node_modules/.cache/flame-ts/typecheck.tsbuildinfo", import.meta.url));

it("the sources, tests, benchmarks and examples type-check (tsc --noEmit)", async () => {
  const report = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = execFile(process.execPath, [TSC, "-p", "tsconfig.json", "--noEmit", "--pretty", "false", "--incremental", "--tsBuildInfoFile", BUILD_INFO], { cwd: REPO, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== "number") return reject(error);
      resolve({ code: child.exitCode, output: `${stdout}${stderr}` });
    });
  });
  expect(report.output.trim(), "tsc reported errors").toBe("");
  expect(report.code).toBe(0);
}, 120_000);
