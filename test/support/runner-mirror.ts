/**
 * The suite's runners start from plain JavaScript, not through tsx: vitest's
 * globalSetup transpiles src/, test/fixtures/, test/support/ and the example
 * app's sources once, file by
 * file (esbuild, as tsx itself would), into test/.generated/runner-mirror/,
 * and test runners (testProcessBackend, through mirror-runner.mjs) run that
 * copy with plain node.
 *
 * Why: on Node 20 tsx's module hooks run off-thread, and every module a
 * runner imports makes a round trip to them: a runner spent about 0.28 s of
 * CPU reaching its agent under tsx against 0.08 s from JavaScript, and the
 * suite boots a few hundred runners on two cores.
 *
 * The copy keeps the repository's layout where runners need it: the package
 * (src/) is at dist/ beside a package.json named flame-ts, as the published
 * package is (so its paths to the agent and the thread module resolve inside
 * the copy), with src/ a link to it, so that fixtures' `../../src/index.js`
 * imports reach the same modules as the agent. The example app's sources are
 * copied too, with the copy's package as their installed "flame-ts": its
 * test runs the service as its image does, compiled, with no tsx in the
 * service or its runners (tsx cost each of them half a second of CPU).
 */
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { build } from "esbuild";
import { REPO, RUNNER_MIRROR } from "./mirror-paths.mjs";

/** The example app (examples/image-service), whose service its test starts from the copy. */
const EXAMPLE = "examples/image-service";

export async function buildRunnerMirror(): Promise<void> {
  rmSync(RUNNER_MIRROR, { recursive: true, force: true });
  mkdirSync(RUNNER_MIRROR, { recursive: true });
  const common = { format: "esm", platform: "node", target: "node20", sourcemap: true, logLevel: "warning" } as const;
  await Promise.all([
    build({ ...common, absWorkingDir: REPO, entryPoints: ["src/**/*.ts"], outbase: "src", outdir: join(RUNNER_MIRROR, "dist") }),
    build({ ...common, absWorkingDir: REPO, entryPoints: ["test/fixtures/**/*.ts", "test/support/**/*.ts", `${EXAMPLE}/src/**/*.ts`], outbase: ".", outdir: RUNNER_MIRROR }),
  ]);
  // The example app imports "flame-ts" as an installed app does: its copy finds the copy's package in its node_modules.
  cpSync(join(REPO, EXAMPLE, "package.json"), join(RUNNER_MIRROR, EXAMPLE, "package.json"));
  mkdirSync(join(RUNNER_MIRROR, EXAMPLE, "node_modules"));
  symlinkSync(relative(join(RUNNER_MIRROR, EXAMPLE, "node_modules"), RUNNER_MIRROR), join(RUNNER_MIRROR, EXAMPLE, "node_modules/flame-ts"));
  // The JavaScript beside them (mirror-paths.mjs, which the copy of backends.ts imports; fixtures' hooks) as it is.
  for (const folder of ["test/fixtures", "test/support"]) {
    cpSync(join(REPO, folder), join(RUNNER_MIRROR, folder), { recursive: true, filter: (path) => !/\.[cm]?ts$/.test(path) });
  }
  symlinkSync("dist", join(RUNNER_MIRROR, "src"));
  const { name, version, type } = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as Record<string, string>;
  writeFileSync(join(RUNNER_MIRROR, "package.json"), `${JSON.stringify({ name, version, type, private: true, exports: "./dist/index.js" })}\n`);
}

/** vitest's globalSetup: the copy is made before any test file runs, and again before each rerun in watch mode. */
export default async function setup(project: { onTestsRerun(callback: () => Promise<void>): void }): Promise<void> {
  await buildRunnerMirror();
  project.onTestsRerun(buildRunnerMirror);
}
