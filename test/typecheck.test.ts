/**
 * The type check, as one test of the suite: it runs beside the other files
 * instead of before them all, and a type error fails `npm test` with tsc's
 * own report. It runs `tsc --build` on test/tsconfig.typecheck.json (the
 * repository's tsconfig.json, its files included, made incremental with its
 * build info under node_modules/.cache; plain JSON, so this file reads where
 * from it): the first run of a checkout checks everything (about
 * 12 s of one core), a run after an edit rechecks what the edit touched, and
 * a run over unchanged files (CI's second and third Node versions) is a
 * timestamp check of a fraction of a second.
 *
 * `tsc --build` compares the sources' timestamps, not the installed
 * declarations': the build info is dropped whenever the install changed
 * (node_modules/.package-lock.json, which npm rewrites on every install), so
 * new dependencies' types are always checked.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const TSC = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url));
const CONFIG = fileURLToPath(new URL("./tsconfig.typecheck.json", import.meta.url));
/** Where the config keeps its build info (`tsc --build` takes no --tsBuildInfoFile, so the config is the one place that says). */
const BUILD_INFO = resolve(dirname(CONFIG), (JSON.parse(readFileSync(CONFIG, "utf8")) as { compilerOptions: { tsBuildInfoFile: string } }).compilerOptions.tsBuildInfoFile);
const INSTALL_STAMP = `${BUILD_INFO}.install`;
const INSTALL_LOCK = fileURLToPath(new URL("../node_modules/.package-lock.json", import.meta.url));

/** Forgets the last check if the installed packages changed since it ran. */
function dropBuildInfoOfAnotherInstall(): void {
  const install = existsSync(INSTALL_LOCK) ? createHash("sha256").update(readFileSync(INSTALL_LOCK)).digest("hex") : "none";
  if (existsSync(INSTALL_STAMP) && readFileSync(INSTALL_STAMP, "utf8") === install) return;
  rmSync(BUILD_INFO, { force: true });
  mkdirSync(dirname(INSTALL_STAMP), { recursive: true });
  writeFileSync(INSTALL_STAMP, install);
}

it("the sources, tests, benchmarks and examples type-check (tsc --build, no emit)", async () => {
  dropBuildInfoOfAnotherInstall();
  const report = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = execFile(process.execPath, [TSC, "--build", CONFIG, "--pretty", "false"], { cwd: REPO, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== "number") return reject(error);
      resolve({ code: child.exitCode, output: `${stdout}${stderr}` });
    });
  });
  expect(report.output.trim(), "tsc reported errors").toBe("");
  expect(report.code).toBe(0);
}, 120_000);
