/**
 * infra/docker: the Dockerfile, its .dockerignore and the image's entrypoint,
 * checked without a Docker engine (there is none here). The Dockerfile is
 * parsed and checked (stages, base image, non-root user, production
 * dependencies only, exec-form entrypoint); the image's file system is laid out
 * on this machine by following it (image-layout.ts), and its commands are run
 * for real: runners started exactly as Ec2Backend's `docker run <image>` and a
 * Fly machine's init.cmd start them serve calls from a real parent, and the
 * image's default command starts the example app.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Pool, type Backend, type ListedRunner, type ProvisionedRunner, type ProvisionRequest } from "../../src/index.js";
import { waitFor } from "../support/processes.js";
import { isIgnored, parseDockerfile, stageNamed, type Dockerfile } from "./dockerfile.js";
import { buildImageLayout, EXAMPLE, exampleCompilerOptions, listFiles, packedFiles, REPO, type ImageLayout } from "./image-layout.js";

const DOCKERFILE = join(REPO, "infra/docker/Dockerfile");
const DOCKERIGNORE = join(REPO, "infra/docker/.dockerignore");
const ENTRYPOINT_SCRIPT = "infra/docker/flame-entrypoint.sh";
const dockerfile: Dockerfile = parseDockerfile(readFileSync(DOCKERFILE, "utf8"));
const final = dockerfile.stages.at(-1)!;
const examplePackage = JSON.parse(readFileSync(join(EXAMPLE, "package.json"), "utf8")) as {
  name: string;
  type?: string;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
};

describe("the Dockerfile", () => {
  it("is multi-stage, on node:20-slim, and the final stage runs as a user that is not root", () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of dockerfile.stages) expect(stage.image).toBe("node:20-slim");
    expect(final.user).toBeDefined();
    expect(["root", "0", "0:0"]).not.toContain(final.user);
    // USER comes after the last RUN and COPY of the final stage: nothing runs as root after it.
    const keywords = final.instructions.map((instruction) => instruction.keyword);
    expect(keywords.lastIndexOf("USER")).toBeGreaterThan(Math.max(keywords.lastIndexOf("RUN"), keywords.lastIndexOf("COPY")));
    expect(final.env.NODE_ENV).toBe("production");
  });

  it("puts production dependencies only in the final stage", () => {
    // The final stage installs no npm package itself...
    expect(final.runs.join("\n")).not.toMatch(/\bnpm\s+(ci|install|i)\b/);
    // ...and takes node_modules from a stage whose last npm step drops the development dependencies.
    const modules = final.copies.filter((copy) => copy.sources.some((source) => /node_modules\/?$/.test(source)));
    expect(modules).toHaveLength(1);
    const source = stageNamed(dockerfile, modules[0]!.from!)!;
    const script = source.runs.join(" && ");
    const lastInstall = Math.max(script.lastIndexOf("npm ci"), script.lastIndexOf("npm install"));
    const prune = script.search(/npm prune --omit=dev|npm ci --omit=dev/);
    expect(prune).toBeGreaterThanOrEqual(0);
    expect(prune).toBeGreaterThanOrEqual(lastInstall);
    // The build context never reaches the final stage: only what the build made from it.
    expect(final.copies.every((copy) => copy.from !== undefined)).toBe(true);
  });

  it("starts through an init and the flame-ts entrypoint, in exec form", () => {
    expect(final.entrypoint).toEqual(["/usr/bin/tini", "--", "/usr/local/bin/flame-entrypoint"]);
    expect(final.runs.join("\n")).toMatch(/apt-get install -y --no-install-recommends tini/);
    expect(final.cmd).toBeUndefined();
    const entrypointCopy = final.copies.find((copy) => copy.destination === "/usr/local/bin/flame-entrypoint")!;
    expect(entrypointCopy).toMatchObject({ chmod: "0755", sources: [`/app/node_modules/flame-ts/${ENTRYPOINT_SCRIPT}`] });
  });

  it("runs the example app's start command and runner entry by default", () => {
    const { APP_MAIN, FLAME_ENTRY } = final.env;
    expect(APP_MAIN).toBe("dist/server.js");
    expect(FLAME_ENTRY).toBe("dist/pool.js");
    expect(examplePackage.scripts.start).toBe(`node ${APP_MAIN}`);
    expect(examplePackage.type).toBe("module");
    // Both modules are what the example's build (tsc) makes of its sources.
    const { fileNames, rootDir, outDir } = exampleCompilerOptions();
    expect(outDir).toBe(join(EXAMPLE, "dist"));
    for (const built of [APP_MAIN, FLAME_ENTRY]) {
      const source = join(rootDir, built!.replace(/^dist\//, "").replace(/\.js$/, ".ts"));
      expect(fileNames).toContain(source);
    }
    expect(examplePackage.scripts.build).toBe("tsc");
  });

  it("finds in the example app's directory everything its build reads, and .dockerignore keeps out what the build makes", () => {
    const ignore = readFileSync(DOCKERIGNORE, "utf8").split("\n");
    const build = stageNamed(dockerfile, "build")!;
    expect(build.copies).toEqual([expect.objectContaining({ from: undefined, sources: ["."], destination: "." })]);
    const { fileNames } = exampleCompilerOptions();
    const needed = ["package.json", "tsconfig.json", ...fileNames.map((file) => file.slice(EXAMPLE.length + 1))];
    for (const file of needed) {
      expect(existsSync(join(EXAMPLE, file)), `${file} in ${EXAMPLE}`).toBe(true);
      expect(isIgnored(ignore, file), `${file} excluded by .dockerignore`).toBe(false);
    }
    // npm ci needs the lock file. The example keeps none (its flame-ts is "file:../.."): the staging script writes it.
    expect(isIgnored(ignore, "package-lock.json")).toBe(false);
    const staging = readFileSync(join(REPO, "infra/docker/stage-example.sh"), "utf8");
    expect(existsSync(join(EXAMPLE, "package-lock.json")) || /^npm install --package-lock-only\b/m.test(staging)).toBe(true);
    for (const built of ["node_modules/pngjs/package.json", "dist/server.js", "src/node_modules/x/index.js", ".env", ".env.production", "npm-debug.log", ".git/HEAD"]) {
      expect(isIgnored(ignore, built), `${built} should be excluded`).toBe(true);
    }
    // What the context holds today goes in unless built (node_modules, dist).
    for (const file of listFiles(EXAMPLE).filter((file) => !/^(node_modules|dist)\//.test(file))) {
      if (!/\.(log|png)$/.test(file) && !file.startsWith(".env")) expect(isIgnored(ignore, file), file).toBe(false);
    }
  });

  it("takes the entrypoint from the flame-ts package, which ships it", () => {
    expect(packedFiles()).toEqual(expect.arrayContaining(["package.json", ENTRYPOINT_SCRIPT, "infra/docker/Dockerfile", "infra/docker/.dockerignore"]));
    expect(statSync(join(REPO, ENTRYPOINT_SCRIPT)).mode & 0o111).not.toBe(0);
  });
});

describe("the image's commands, run outside Docker", () => {
  let layout: ImageLayout;
  const started = new Set<ChildProcess>();
  const pools: Pool[] = [];
  const savedEnv = { FLAME_BUILD_ID: process.env.FLAME_BUILD_ID, FLY_IMAGE_REF: process.env.FLY_IMAGE_REF };

  beforeAll(() => {
    layout = buildImageLayout(dockerfile);
    // Parent and runner agree on the app version: the same package.json, the same build id.
    process.env.FLAME_BUILD_ID = "docker-test";
    delete process.env.FLY_IMAGE_REF;
  }, 60_000);

  afterEach(async () => {
    for (const pool of pools.splice(0)) await pool.stop();
    for (const child of started) await stopProcess(child);
    started.clear();
  });

  afterAll(() => {
    layout?.remove();
    for (const [name, value] of Object.entries(savedEnv)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  /** What `docker run [-e NAME...] <image> [command]` starts: the ENTRYPOINT, then the command, in WORKDIR, with the image's ENV. */
  function dockerRun(command: string[], env: Record<string, string>): ChildProcess {
    const [executable, ...args] = layout.entrypoint;
    const child = spawn(executable!, [...args, ...command], {
      cwd: layout.workdir,
      env: {
        PATH: `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
        HOME: layout.root,
        ...layout.env,
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    started.add(child);
    return child;
  }

  /**
   * A backend that starts each runner as a container of the image would start:
   * `command(request)` says the container's command (none for EC2's `docker run`),
   * `env(request)` what the provider passes in.
   */
  function imageBackend(command: (request: ProvisionRequest) => string[], env: (request: ProvisionRequest) => Record<string, string>): Backend {
    const runners = new Map<string, ChildProcess>();
    return {
      name: "image",
      async provision(request) {
        const child = dockerRun(command(request), env(request));
        let output = "";
        child.stdout!.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000)));
        child.stderr!.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000)));
        runners.set(request.runnerId, child);
        const exited = new Promise<string>((resolve) => child.once("exit", (code, signal) => resolve(`exited with ${signal ?? code}: ${output}`)));
        return { runnerId: request.runnerId, providerId: String(child.pid), exited };
      },
      async terminate(runner: ProvisionedRunner) {
        const child = runners.get(runner.runnerId);
        runners.delete(runner.runnerId);
        if (child) await stopProcess(child);
      },
      async list(): Promise<ListedRunner[]> {
        return [...runners].map(([runnerId, child]) => ({ runnerId, providerId: String(child.pid), pool: "images", parentId: "", state: "running" }));
      },
    };
  }

  /** The example's pool as the parent sees it: the same name, entry and function ids (the bodies run on runners only). */
  function imagesPool(backend: Backend): { pool: Pool; fractal: (request: object) => Promise<Uint8Array> } {
    const pool = new Pool({ name: "images", max: 1, entry: join(layout.workdir, final.env.FLAME_ENTRY!), backend, bootTimeout: 20_000, log: false });
    pools.push(pool);
    const fractal = pool.define("fractal", (_request: object): Uint8Array => {
      throw new Error("runs on a runner only");
    });
    return { pool, fractal };
  }

  const view = { width: 24, height: 16, centerX: -0.75, centerY: 0, zoom: 1, iterations: 50 };
  const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47];

  it("serves calls as an EC2 runner: no command, FLAME_PARENT and FLAME_ENTRY passed in", async () => {
    // Ec2Backend's boot script: docker run --network host -e FLAME_PARENT -e FLAME_ENTRY -e FLAME_BUILD_ID <image>
    const backend = imageBackend(() => [], (request) => ({ ...request.env, FLAME_ENTRY: request.entry!, FLAME_BUILD_ID: "docker-test" }));
    const { fractal } = imagesPool(backend);
    const png = await fractal(view);
    expect([...png.subarray(0, 4)]).toEqual(PNG_SIGNATURE);
  });

  it("imports the image's default runner entry when the backend passes none", async () => {
    const backend = imageBackend(() => [], (request) => ({ ...request.env, FLAME_BUILD_ID: "docker-test" }));
    const { fractal } = imagesPool(backend);
    expect([...(await fractal(view)).subarray(0, 4)]).toEqual(PNG_SIGNATURE);
  });

  it("serves calls as a Fly runner: the machine's init.cmd is FlyBackend's default, the runner agent at the image's path", async () => {
    // FlyBackend, in the image's parent, sets init.cmd = [node, <its runner agent>, <entry>]; Fly keeps the ENTRYPOINT.
    // That the image's FlyBackend computes exactly this command is checked in fly.test.ts, through the Fly emulator.
    const agent = join(layout.workdir, "node_modules/flame-ts/dist/runner-agent/main.js");
    expect(existsSync(agent)).toBe(true);
    const backend = imageBackend(
      (request) => ["node", agent, request.entry!],
      (request) => ({ ...request.env, FLAME_ENTRY: request.entry!, FLAME_BUILD_ID: "docker-test" }),
    );
    const { fractal } = imagesPool(backend);
    expect([...(await fractal(view)).subarray(0, 4)]).toEqual(PNG_SIGNATURE);
  });

  it("runs the example app by default, which renders on its own runners and stops on SIGTERM", async () => {
    const parent = dockerRun([], { FLAME_BACKEND: "process", PORT: "0", HOST: "127.0.0.1", FLAME_BUILD_ID: "docker-test", FLAME_LOG_LEVEL: "warn" });
    let output = "";
    parent.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    parent.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    let port = 0;
    await waitFor(() => {
      if (parent.exitCode !== null) throw new Error(`the app exited (${parent.exitCode}): ${output}`);
      port = Number(/listening on http:\/\/localhost:(\d+)/.exec(output)?.[1] ?? 0);
      return port > 0;
    }, "the example app to listen", 20_000);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    const rendered = await fetch(`http://127.0.0.1:${port}/fractal?width=24&height=16&iterations=50`);
    expect(rendered.status, output).toBe(200);
    expect([...new Uint8Array(await rendered.arrayBuffer()).subarray(0, 4)]).toEqual(PNG_SIGNATURE);
    parent.kill("SIGTERM");
    const [code] = (await once(parent, "exit")) as [number | null];
    expect(code, output).toBe(0);
  });

  it("runs a given command instead, and refuses to start without the app's main module", async () => {
    const echo = dockerRun(["node", "-e", "process.stdout.write(process.cwd())"], {});
    let printed = "";
    echo.stdout!.on("data", (chunk: Buffer) => (printed += chunk.toString()));
    await once(echo, "exit");
    expect(printed).toBe(layout.workdir);
    const [executable] = layout.entrypoint;
    const missing = spawnSync(executable!, [], { cwd: layout.workdir, env: { PATH: `${dirname(process.execPath)}:/usr/bin:/bin` }, encoding: "utf8" });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain("APP_MAIN");
  });
});

/** SIGTERM, then SIGKILL if it is still there after 3 s; resolves once it exited. */
async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
  await exited;
  clearTimeout(timer);
}
