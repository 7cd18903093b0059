/**
 * The file system of the image infra/docker/Dockerfile builds for the example
 * app, laid out on this machine without Docker (there is no engine here), so
 * that the image's commands can be run for real.
 *
 * It follows the Dockerfile's build stage with local tools: flame-ts as npm
 * would install it from its package (the files `npm pack` ships, with dist/
 * compiled by tsc), the example's package.json, and its src/ compiled to dist/
 * with the compiler options of its own tsconfig.json (transpiled file by file:
 * the repository's type check covers the example's types). Then it applies the
 * final stage's COPY instructions, so a path the Dockerfile gets wrong is
 * missing here too.
 *
 * The layout lives under the repository's node_modules/.cache: the example's
 * other dependencies (pngjs) and flame-ts's (ws, valibot) resolve from the
 * repository's node_modules, as they would from the image's.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, lstatSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, posix, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type ts from "typescript";
import { stageNamed, type Dockerfile, type Stage } from "./dockerfile.js";

export const REPO = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
export const EXAMPLE = join(REPO, "examples/image-service");

export interface ImageLayout {
  /** Stands for the image's `/`. */
  root: string;
  /** The image's WORKDIR, on this machine. */
  workdir: string;
  /** The image's environment (ENV of the final stage). */
  env: Record<string, string>;
  /** The ENTRYPOINT with image paths mapped to this machine, minus an init (tini) in front. */
  entrypoint: string[];
  /** Files `npm pack` ships for flame-ts. */
  packedFiles: string[];
  /** Maps an absolute image path to this machine. */
  hostPath(imagePath: string): string;
  remove(): void;
}

/** Builds the layout; takes a few seconds (tsc compiles flame-ts). */
export function buildImageLayout(dockerfile: Dockerfile): ImageLayout {
  const final = dockerfile.stages.at(-1)!;
  const cache = join(REPO, "node_modules/.cache");
  mkdirSync(cache, { recursive: true });
  const root = mkdtempSync(join(cache, "flame-image-"));
  const hostPath = (imagePath: string) => join(root, imagePath);
  try {
    const workdir = hostPath(final.workdir ?? "/");
    const copied = new Set<string>();
    for (const copy of final.copies) {
      if (!copy.from) throw new Error(`line ${copy.line}: the final stage copies from the build context; only built files should go in`);
      const stage = stageNamed(dockerfile, copy.from);
      if (!stage) throw new Error(`line ${copy.line}: no stage named ${copy.from}`);
      const stageRoot = buildStageRoot(stage, copy.from, root, copied);
      for (const source of copy.sources) {
        const from = join(stageRoot, resolveImagePath(stage, source));
        if (!existsSync(from)) throw new Error(`line ${copy.line}: ${source} does not exist in stage ${copy.from} (looked at ${from})`);
        const to = hostPath(resolveImagePath(final, copy.destination.endsWith("/") ? posix.join(copy.destination, posix.basename(source)) : copy.destination));
        if (resolve(from) !== resolve(to)) {
          mkdirSync(dirname(to), { recursive: true });
          cpSync(from, to, { recursive: true });
        }
        if (copy.chmod) chmodSync(to, Number.parseInt(copy.chmod, 8));
      }
    }
    const entrypoint = (final.entrypoint ?? []).slice();
    // An init in front (tini --) is not on this machine; what it runs is what matters.
    if (/(^|\/)tini$/.test(entrypoint[0] ?? "")) entrypoint.splice(0, entrypoint[1] === "--" ? 2 : 1);
    return {
      root,
      workdir,
      env: final.env,
      entrypoint: entrypoint.map((word, index) => (index === 0 && word.startsWith("/") ? hostPath(word) : word)),
      packedFiles: packedFiles(),
      hostPath,
      remove: () => rmSync(root, { recursive: true, force: true }),
    };
  } catch (error) {
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
}

/** An absolute image path for `path`, relative paths taken from the stage's WORKDIR. */
function resolveImagePath(stage: Stage, path: string): string {
  return posix.resolve(stage.workdir ?? "/", path);
}

/**
 * The build stage's result, once: what `npm ci && npm run build && npm prune
 * --omit=dev` leaves in its WORKDIR. The stage is laid out where the final
 * stage's WORKDIR is when both are the same path (the usual /app), so the
 * final stage's copies from it land in place.
 */
function buildStageRoot(stage: Stage, name: string, root: string, built: Set<string>): string {
  if (!stage.workdir) throw new Error(`stage ${name} has no WORKDIR`);
  const app = join(root, stage.workdir);
  if (built.has(name)) return root;
  built.add(name);
  const script = stage.runs.join(" && ");
  for (const step of ["npm ci", "npm run build", "npm prune --omit=dev"]) {
    if (!script.includes(step)) throw new Error(`stage ${name} does not run "${step}"; this layout follows a build that does`);
  }
  mkdirSync(app, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(EXAMPLE, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
  if (!manifest.dependencies?.["flame-ts"]) throw new Error("the example app does not depend on flame-ts in its production dependencies");
  copyFileSync(join(EXAMPLE, "package.json"), join(app, "package.json"));
  installFlameTs(join(app, "node_modules/flame-ts"));
  compileExample(join(app, "dist"));
  return root;
}

let packedFileList: string[] | undefined;

/**
 * The files `npm pack` puts in flame-ts's package (what `npm install flame-ts`
 * unpacks). Asked once per test file: each `npm pack --dry-run` costs most of
 * a second of CPU, and no test changes what the package holds.
 */
export function packedFiles(): string[] {
  if (packedFileList === undefined) {
    const output = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: REPO,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    const [pack] = JSON.parse(output) as Array<{ files: Array<{ path: string }> }>;
    packedFileList = pack!.files.map((file) => file.path);
  }
  return [...packedFileList];
}

/**
 * flame-ts as installed from its package: the packed files, and dist/ made
 * by the package's own build script (its esbuild step, written to this
 * layout instead of the repository's dist/, which other tests may be using).
 */
function installFlameTs(target: string): void {
  for (const file of packedFiles()) {
    if (file.startsWith("dist/")) continue;
    mkdirSync(dirname(join(target, file)), { recursive: true });
    copyFileSync(join(REPO, file), join(target, file));
  }
  const manifest = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { scripts: Record<string, string> };
  const build = manifest.scripts.build ?? "";
  const esbuild = build.split("&&").map((step) => step.trim()).find((step) => step.startsWith("esbuild "));
  if (esbuild && esbuild.includes("--outdir=dist ")) {
    const args = esbuild.replace("--outdir=dist ", `--outdir=${join(target, "dist")} `).split(/\s+/).slice(1);
    execFileSync(join(REPO, "node_modules/.bin/esbuild"), args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  } else if (build.startsWith("tsc")) {
    const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
    execFileSync(process.execPath, [tsc, "-p", join(REPO, "tsconfig.build.json"), "--outDir", join(target, "dist"), "--declaration", "false", "--sourceMap", "false"], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
    });
  } else {
    throw new Error(`this layout does not know how to follow flame-ts's build script: ${build}`);
  }
}

/**
 * The TypeScript compiler, loaded on first use: most files that import this
 * module only want its paths, and loading the compiler costs a worker about a
 * second of CPU.
 */
function typescript(): typeof ts {
  return createRequire(import.meta.url)("typescript") as typeof ts;
}

/** The example's `npm run build` (tsc with its tsconfig.json), file by file. */
function compileExample(outDir: string): void {
  const ts = typescript();
  const config = exampleCompilerOptions();
  // File by file, tsc cannot see package.json's "type": "module" that makes NodeNext emit ES modules: say it.
  const esm = (JSON.parse(readFileSync(join(EXAMPLE, "package.json"), "utf8")) as { type?: string }).type === "module";
  const compilerOptions = esm ? { ...config.options, module: ts.ModuleKind.ESNext } : config.options;
  for (const file of config.fileNames) {
    const output = ts.transpileModule(readFileSync(file, "utf8"), { compilerOptions, fileName: file });
    const target = join(outDir, relative(config.rootDir, file)).replace(/\.ts$/, ".js");
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, output.outputText);
  }
}

/** The example's tsconfig.json, as tsc reads it: its source files, rootDir and outDir. */
export function exampleCompilerOptions(): { options: ts.CompilerOptions; fileNames: string[]; rootDir: string; outDir: string } {
  const ts = typescript();
  const path = join(EXAMPLE, "tsconfig.json");
  if (!existsSync(path)) throw new Error(`the example has no tsconfig.json (its "build" script is tsc): ${path}`);
  const parsed = ts.getParsedCommandLineOfConfigFile(path, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
    throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"));
  } })!;
  const fileNames = parsed.fileNames.filter((file) => !file.endsWith(".d.ts"));
  const rootDir = parsed.options.rootDir ?? commonDirectory(fileNames);
  return { options: parsed.options, fileNames, rootDir, outDir: parsed.options.outDir ?? EXAMPLE };
}

function commonDirectory(files: string[]): string {
  let common = dirname(files[0]!);
  while (!files.every((file) => file.startsWith(`${common}/`))) common = dirname(common);
  return common;
}

/** Every file under `directory`, relative, with `/`; symbolic links and node_modules are not followed. */
export function listFiles(directory: string, base = directory): string[] {
  return readdirSync(directory).flatMap((name) => {
    const path = join(directory, name);
    const stat = lstatSync(path);
    if (stat.isDirectory()) return name === "node_modules" ? [] : listFiles(path, base);
    return [relative(base, path).split("\\").join("/")];
  });
}
