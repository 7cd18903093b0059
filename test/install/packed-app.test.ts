/**
 * flame-ts as a user installs it: the packed package in a new app under the
 * system's temp directory (no repository file reachable), used the ways the
 * README says it can be: ESM and CommonJS, pools in any module, nested calls,
 * under `node --test`, a strict TypeScript build, and the diagnostics a user
 * meets first (a port in use, output, an entry that throws, a forgotten
 * stop(), Ctrl-C).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appEnvironment, appWithPackage, BUILD_TIMEOUT, INSTALL_TIMEOUT, REPO, registryReachable, run } from "../support/packed-package.js";
import { descendantPids, waitFor } from "../support/processes.js";

const registry = await registryReachable("the packed-package tests");

/** The app's files, written once. */
const FILES: Record<string, string> = {
  // Pools in an imported module, no entry option; a nested call from a runner.
  "pools.mjs": `
import { currentCall, Pool } from "flame-ts";
export const pool = new Pool({ name: "app", max: 2 });
export const double = pool.define("double", (n) => n * 2);
export const nested = pool.define("nested", async (n) => ({ doubled: await double(n), runner: currentCall().runnerId }));
export const shout = pool.define("shout", (text) => {
  process.stdout.write("raw stdout: " + text + "\\n");
  console.log("console: " + text);
  return text;
});
`,
  "main.mjs": `
import { pool, double, nested } from "./pools.mjs";
console.log(JSON.stringify({ double: await double(21), nested: await nested(4) }));
await pool.stop();
`,
  "pools.test.mjs": `
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { pool, double } from "./pools.mjs";
after(() => pool.stop());
test("a pool defined in an imported module runs under node --test", async () => {
  assert.equal(await double(3), 6);
});
`,
  "pools.cjs": `
const { Pool } = require("flame-ts");
const pool = new Pool({ name: "cjs", max: 1, log: "warn" });
const triple = pool.define("triple", (n) => n * 3);
module.exports = { pool, triple };
`,
  // The provider backends as an app on a runner builds them, then each used once: its implementation chunk loads from dist/.
  "backends.mjs": `
import { Ec2Backend, FlyApiError, FlyBackend, KubernetesApiError, KubernetesBackend } from "flame-ts";
const fly = new FlyBackend({ app: "packed", image: "registry.fly.io/packed:1" });
const ec2 = new Ec2Backend({ region: "us-east-1", runnerImage: "ghcr.io/example/app:1", controlPlane: { advertisedHost: "10.0.0.5" } });
const kubernetes = new KubernetesBackend({ kubeconfig: "/nonexistent/kubeconfig", image: "ghcr.io/example/app:1" });
const outcome = (use) => use().then((value) => value, (error) => ({ code: error.code ?? String(error) }));
console.log(JSON.stringify({
  names: [fly.name, ec2.name, kubernetes.name],
  errorClasses: [typeof FlyApiError, typeof KubernetesApiError],
  fly: await outcome(() => fly.list()),
  ec2: await outcome(() => ec2.controlPlane()),
  kubernetes: await outcome(() => kubernetes.list()),
}));
`,
  "main.cjs": `
const { pool, triple } = require("./pools.cjs");
triple(5).then(async (value) => {
  console.log(JSON.stringify({ triple: value }));
  await pool.stop();
});
`,
  // The pinned TLS channel as an installed package runs it: the certificate code is loaded from the app's node_modules.
  "tls.mjs": `
import { isRunner, Pool, ProcessBackend } from "flame-ts";
export const pool = new Pool({ name: "tls", max: 1, log: "warn", backend: new ProcessBackend({ tls: true }) });
export const twice = pool.define("twice", (n) => n * 2);
if (!isRunner()) {
  console.log(JSON.stringify({ twice: await twice(21) }));
  await pool.stop();
}
`,
  "stdout.mjs": `
import { pool, shout } from "./pools.mjs";
await shout("hello");
await pool.stop();
`,
  // An app that starts its server at load, outside the isRunner() guard: its runners cannot bind the port.
  "unguarded.mjs": `
import { createServer } from "node:http";
import { Pool } from "flame-ts";
export const pool = new Pool({ name: "unguarded", max: 1, log: "warn" });
export const ping = pool.define("ping", () => "pong");
createServer().listen(Number(process.env.APP_PORT), "127.0.0.1");
if (process.argv[1] === new URL(import.meta.url).pathname) {
  const startedAt = Date.now();
  const error = await ping().catch((e) => e);
  console.log(JSON.stringify({ name: error.name, message: error.message, elapsed: Date.now() - startedAt }));
  await pool.stop();
  process.exit(0);
}
`,
  "throws.mjs": `
import { isRunner, Pool } from "flame-ts";
export const pool = new Pool({ name: "throws", max: 1, log: "warn" });
export const ping = pool.define("ping", () => "pong");
if (isRunner() && !process.env.DATABASE_URL) throw new Error("DATABASE_URL is not set");
if (!isRunner()) {
  const startedAt = Date.now();
  const error = await ping().catch((e) => e);
  console.log(JSON.stringify({ name: error.name, message: error.message, elapsed: Date.now() - startedAt }));
  await pool.stop();
}
`,
  // Runner threads from the package as installed: the built thread module imports this app on each thread.
  "threads.mjs": `
import { threadId } from "node:worker_threads";
import { currentCall, isRunner, Pool } from "flame-ts";
const pool = new Pool({ name: "threads", max: 1, runnerThreads: 2, log: "warn" });
const where = pool.define("where", async (ms) => {
  await new Promise((resolve) => setTimeout(resolve, ms));
  return { thread: currentCall().thread, threadId, pid: process.pid };
});
const quit = pool.define("quit", () => process.exit(3));
if (!isRunner()) {
  const spread = await Promise.all([where(100), where(100)]);
  const crashed = await quit().catch((error) => ({ name: error.name, code: error.code, thread: error.thread }));
  const after = await where(0);
  console.log(JSON.stringify({ threads: spread.map((call) => call.thread).sort(), onePid: new Set([...spread, after].map((call) => call.pid)).size === 1, crashed, stats: pool.stats().threads.total }));
  await pool.stop();
}
`,
  // LocalBackend loads its in-process agent (and ws) only when a runner starts: that chunk must ship and resolve.
  "local.mjs": `
import { currentCall, LocalBackend, Pool } from "flame-ts";
const pool = new Pool({ name: "local", max: 1, backend: new LocalBackend(), log: "warn" });
const where = pool.define("where", (n) => ({ doubled: n * 2, runner: currentCall().runnerId }));
console.log(JSON.stringify(await where(21)));
await pool.stop();
`,
  "forgetful.mjs": `
import { isRunner, Pool } from "flame-ts";
const pool = new Pool({ name: "forgetful", min: 1, max: 1, log: "warn" });
const add = pool.define("add", (a, b) => a + b);
if (!isRunner()) {
  await pool.start();
  console.log(JSON.stringify({ sum: await add(1, 2) }));
}
`,
  // Two copies of the package in one app (what a duplicated install gives): errors of one are instanceof the other's classes.
  "copies.mjs": `
import { cpSync } from "node:fs";
import { createRequire } from "node:module";
const required = createRequire(import.meta.url)("flame-ts");
const imported = await import("flame-ts");
cpSync("node_modules/flame-ts", "second-copy/node_modules/flame-ts", { recursive: true });
const second = await import("./second-copy/node_modules/flame-ts/dist/index.js");
let thrown;
try {
  new second.Pool({ name: "copies", max: -1 });
} catch (error) {
  thrown = error;
}
const late = new second.BootTimeoutError("late");
const failed = new imported.BootError("failed");
console.log(JSON.stringify({
  requireAndImportAgree: required.BootError === imported.BootError && required.FlameError === imported.FlameError,
  secondIsAnotherCopy: second.BootError !== imported.BootError,
  thrownBySecond: [thrown instanceof imported.InvalidOptionError, thrown instanceof imported.FlameError, thrown instanceof imported.BootError, thrown?.code],
  secondTimeout: [late instanceof imported.BootTimeoutError, late instanceof imported.BootError, late instanceof required.FlameError],
  firstBootError: [failed instanceof second.BootError, failed instanceof second.FlameError, failed instanceof second.BootTimeoutError],
  remoteIsNoBootError: new second.RemoteError({ name: "Error", message: "m" }) instanceof imported.BootError,
}));
`,
  // A service that drains on SIGINT (as examples/image-service does): in-flight work finishes.
  "service.mjs": `
import { isRunner, Pool } from "flame-ts";
import { setTimeout as sleep } from "node:timers/promises";
export const pool = new Pool({ name: "service", max: 1, log: "warn" });
export const render = pool.define("render", async (ms) => { await sleep(ms); return "rendered"; });
if (!isRunner()) {
  await pool.start();
  await render(1);
  process.once("SIGINT", async () => {
    console.log("draining");
    await pool.stop();
    console.log("stopped");
  });
  const result = render(1500).then((value) => console.log("result:", value), (error) => console.log("failed:", error.message));
  console.log("in flight");
  await result;
}
`,
};

const TYPES: Record<string, string> = {
  "tsconfig.json": JSON.stringify({
    compilerOptions: {
      strict: true,
      skipLibCheck: false,
      // TypeScript's own lib files are not ours to check (and are most of the time); @types/node and flame-ts's declarations are.
      skipDefaultLibCheck: true,
      exactOptionalPropertyTypes: true,
      noUncheckedIndexedAccess: true,
      module: "NodeNext",
      moduleResolution: "NodeNext",
      target: "ES2022",
      types: ["node"],
      noEmit: true,
    },
    files: ["consumer.mts"],
  }),
  "consumer.mts": `
import { currentCall, InvalidOptionError, Pool, ProcessBackend, type CallOptions, type PoolOptions } from "flame-ts";
// The emulators' entry points too: their declarations must not need their optional peers (ajv, kubernetes-models).
import type { FlyEmulator } from "flame-ts/fly-emulator";
import type { KubernetesEmulator } from "flame-ts/k8s-emulator";
export type Emulators = [FlyEmulator["url"], KubernetesEmulator["url"]];

const options: PoolOptions = { name: "typed", max: 2, backend: new ProcessBackend({ killTimeout: 500 }), timeout: 1_000 };
const pool = new Pool(options);

export const add = pool.define("add", (a: number, b: number) => a + b);
export const greet = pool.define("greet", async (name: string, punctuation = "!") => ({ text: \`hello \${name}\${punctuation}\` }));
export const identity = pool.define("identity", <T,>(value: T) => value);
export const usesContext = pool.define("usesContext", () => {
  const call = currentCall();
  return call ? { runner: call.runnerId, left: call.deadline - Date.now(), aborted: call.signal.aborted } : undefined;
});

const sum: number = await add(1, 2);
const greeting: { text: string } = await greet("ada");
await greet("ada", "?");
const callOptions: CallOptions = { timeout: 500 };
const viaCall: number = await pool.call(add, [1, 2], callOptions);
const same: string = await identity("x");
const ctx = await usesContext();
const runner: string | undefined = ctx?.runner;

// @ts-expect-error a string is not a number
await add("1", 2);
// @ts-expect-error too few arguments
await add(1);
// @ts-expect-error the result is a number, not a string
const wrong: string = await add(1, 2);
// @ts-expect-error call() checks the argument tuple too
await pool.call(add, ["1", 2]);
// @ts-expect-error a typo in the context is caught, not silently any
currentCall()?.runerId;
// @ts-expect-error exactOptionalPropertyTypes: an explicit undefined is not an omitted option
const explicitUndefined: CallOptions = { timeout: undefined };

export const used = [sum, greeting, viaCall, same, runner, wrong, explicitUndefined, InvalidOptionError];
`,
};

let app: string;

/** The first TypeScript block after the README's "## Quick start" heading. */
function quickStart(): string {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  return /```ts\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf("## Quick start")))![1]!;
}

beforeAll(async () => {
  if (!registry) return;
  app = await appWithPackage("flame-ts-user-app", ["typescript@5.9.3", "@types/node@20", "tsx@4"]);
  for (const [name, content] of Object.entries({ ...FILES, ...TYPES })) writeFileSync(join(app, name), content);
  // The README's quick start, as a user saves it: app.ts importing "flame-ts".
  writeFileSync(join(app, "quick-start.mts"), quickStart());
}, BUILD_TIMEOUT + INSTALL_TIMEOUT);

afterAll(() => {
  if (app) rmSync(app, { recursive: true, force: true });
});

/** Runs `node <args>` in the app; resolves with its stdout and stderr, whatever its exit code. */
async function node(args: string[], env: Record<string, string> = {}, timeout = 30_000) {
  const child = spawn(process.execPath, args, { cwd: app, env: appEnvironment(env), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeout);
  const startedAt = Date.now();
  const [code] = (await once(child, "exit")) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr, elapsed: Date.now() - startedAt };
}

function lastJsonLine(output: string): any {
  const line = output.trim().split("\n").reverse().find((candidate) => candidate.startsWith("{"));
  if (!line) throw new Error(`no JSON line in:\n${output}`);
  return JSON.parse(line);
}

describe.skipIf(!registry)("the packed package, installed into an app outside the repository", () => {
  it("an ESM app with pools in an imported module and a nested call needs no entry option", async () => {
    const { code, stdout, stderr } = await node(["main.mjs"], { FLAME_LOG_LEVEL: "warn" });
    expect(code, stderr).toBe(0);
    expect(lastJsonLine(stdout)).toMatchObject({ double: 42, nested: { doubled: 8, runner: expect.stringMatching(/^app-/) } });
  });

  it("the README's relative links lead to files the package ships, and it ships its licence", () => {
    const installed = join(app, "node_modules/flame-ts");
    const readme = readFileSync(join(installed, "README.md"), "utf8");
    const links = [...readme.matchAll(/\]\(([^)#\s]+)[^)]*\)/g)].map((match) => match[1]!).filter((target) => !/^[a-z]+:/.test(target));
    expect(links.length).toBeGreaterThan(0);
    expect(links.filter((target) => !existsSync(join(installed, target)))).toEqual([]);
    expect(existsSync(join(installed, "LICENSE"))).toBe(true);
  });

  it("the README's quick start runs as written with tsx, and doctor --entry checks it without running it", async () => {
    const tsx = join(app, "node_modules/.bin/tsx");
    const ran = await run(tsx, ["quick-start.mts"], app, 30_000, appEnvironment({ FLAME_LOG_LEVEL: "warn" }));
    expect(ran).toMatch(/\{ pixels: 65536, renderedBy: 'thumbs-[^']+' \}/);
    // No loader given: doctor registers the app's own tsx for the .ts entry, and runs none of the app's calls.
    const checked = await run(join(app, "node_modules/.bin/flame-ts"), ["doctor", "--entry", "quick-start.mts"], app, 30_000);
    expect(checked).toContain('process backend, pool "thumbs"');
    expect(checked).toContain("all checks passed");
    expect(checked).not.toContain("pixels");
  });

  it("the Fly, EC2 and Kubernetes backends load their implementations from the package when used, and doctor --backend finds them", async () => {
    const { code, stdout, stderr } = await node(["backends.mjs"], { FLY_API_TOKEN: "", FLY_APP_NAME: "", KUBECONFIG: "" });
    expect(code, stderr).toBe(0);
    expect(lastJsonLine(stdout)).toEqual({
      names: ["fly", "ec2", "kubernetes"],
      errorClasses: ["function", "function"],
      fly: { code: "FLAME_FLY_INVALID_CONFIGURATION" },
      ec2: { host: "0.0.0.0", port: 3526, tls: true },
      kubernetes: { code: expect.stringMatching(/^FLAME_KUBERNETES_/) },
    });
    // The CLI takes the backend from the package's entry; with no token it says what is missing.
    const doctor = await run(join(app, "node_modules/.bin/flame-ts"), ["doctor", "--backend", "fly"], app, 30_000, appEnvironment({ FLY_API_TOKEN: "" })).catch(
      (error: Error) => error.message,
    );
    expect(doctor).toMatch(/FlyBackend needs a Machines API token/);
  });

  it("the same pools work from node --test", async () => {
    const { code, stdout, stderr } = await node(["--test", "--test-reporter=tap", "pools.test.mjs"]);
    expect(code, stdout + stderr).toBe(0);
    expect(stdout).toMatch(/# pass 1/);
  });

  it("require('flame-ts') works, and pools defined in a CommonJS module are found on runners", async () => {
    const { code, stdout, stderr } = await node(["main.cjs"]);
    expect(code, stderr).toBe(0);
    expect(lastJsonLine(stdout)).toEqual({ triple: 15 });
  });

  it("the published declarations compile under strict, without skipLibCheck, with no @types/ws or AWS SDK, and bring no dependency's types into the app's build", async () => {
    const output = await run(process.execPath, [join(app, "node_modules/typescript/bin/tsc"), "-p", app, "--listFiles"], app, 120_000);
    // Only @types/node (and what it references) besides flame-ts's own: valibot's schema types, internal to option
    // validation, cost a user's strict build seconds of checking if the public declarations reach them.
    const packages = new Set([...output.matchAll(/node_modules\/((?:@[^/]+\/)?[^/]+)\//g)].map((match) => match[1]));
    expect([...packages].sort()).toEqual(["@types/node", "flame-ts", "typescript", "undici-types"]);
  }, 120_000);

  it("ProcessBackend({ tls: true }) runs calls over the pinned TLS channel, and flame-ts runner --help answers", async () => {
    const { code, stdout, stderr } = await node(["tls.mjs"]);
    expect(code, stderr).toBe(0);
    expect(lastJsonLine(stdout)).toEqual({ twice: 42 });
    const help = await run(join(app, "node_modules/.bin/flame-ts"), ["runner", "--help"], app, 20_000);
    expect(help).toContain("Usage: flame-ts runner");
  });

  it("runnerThreads spreads calls over a runner's worker threads, and a crashed thread fails only its call", async () => {
    const { code, stdout, stderr } = await node(["threads.mjs"]);
    expect(code, stderr).toBe(0);
    expect(lastJsonLine(stdout)).toEqual({ threads: [1, 2], onePid: true, crashed: { name: "ThreadExitedError", code: "FLAME_THREAD_EXITED", thread: 1 }, stats: 2 });
  });

  it("a LocalBackend pool runs its calls in the app's own process", async () => {
    const { code, stdout, stderr } = await node(["local.mjs"]);
    expect(code, stderr).toBe(0);
    expect(lastJsonLine(stdout)).toEqual({ doubled: 42, runner: expect.stringMatching(/^local-/) });
  });

  it("a runner's raw stdout and console output reach the parent's log, tagged", async () => {
    const { code, stderr } = await node(["stdout.mjs"], { FLAME_LOG_LEVEL: "info" });
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/\[flame app\/app-[^\]]+\] info: raw stdout: hello/);
    expect(stderr).toMatch(/\[flame app\/app-[^\]]+\] info: console: hello/);
  });

  it("an app whose unguarded listen() fails on the runner fails the call fast, saying EADDRINUSE", async () => {
    // A free port: the parent binds it, so its runner (same machine, same module) cannot.
    const probe: Server = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = String((probe.address() as { port: number }).port);
    await new Promise((resolve) => probe.close(resolve));
    const { code, stdout, stderr } = await node(["unguarded.mjs"], { APP_PORT: port });
    expect(code, stderr).toBe(0);
    const result = lastJsonLine(stdout);
    // Before or after its hello, depending on timing: either way the caller learns why, at once.
    expect(["BootError", "RunnerExitedError"]).toContain(result.name);
    expect(result.message).toContain("EADDRINUSE");
    expect(stderr).toContain("EADDRINUSE");
    expect(result.elapsed).toBeLessThan(10_000);
  });

  it("an entry that throws at load fails the first call within seconds with the thrown message", async () => {
    const { code, stdout, stderr } = await node(["throws.mjs"]);
    expect(code, stderr).toBe(0);
    const result = lastJsonLine(stdout);
    expect(result.name).toBe("BootError");
    expect(result.message).toContain("DATABASE_URL is not set");
    expect(result.elapsed).toBeLessThan(10_000);
  });

  it("errors are instanceof across require and import and across two installed copies, as precisely as their classes", async () => {
    const { code, stdout, stderr } = await node(["copies.mjs"]);
    expect(code, stderr).toBe(0);
    expect(lastJsonLine(stdout)).toEqual({
      requireAndImportAgree: true,
      secondIsAnotherCopy: true,
      thrownBySecond: [true, true, false, "FLAME_INVALID_OPTION"],
      secondTimeout: [true, true, true],
      firstBootError: [true, true, false],
      remoteIsNoBootError: false,
    });
  });

  it("a script that forgets stop() exits promptly when its work is done", async () => {
    const { code, stdout, elapsed } = await node(["forgetful.mjs"]);
    expect(code).toBe(0);
    expect(lastJsonLine(stdout)).toEqual({ sum: 3 });
    expect(elapsed).toBeLessThan(10_000);
  });

  it("Ctrl-C (SIGINT to the whole process group) lets an in-flight call finish while the service drains", async () => {
    const child = spawn(process.execPath, ["service.mjs"], { cwd: app, env: appEnvironment(), stdio: ["ignore", "pipe", "pipe"], detached: true });
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk));
    child.stderr.on("data", (chunk: Buffer) => (stdout += chunk));
    try {
      await waitFor(() => stdout.includes("in flight"), "the service to have a call in flight", 20_000);
      // What a terminal does on Ctrl-C: SIGINT to every process of the foreground group.
      process.kill(-child.pid!, "SIGINT");
      const [code] = await once(child, "exit");
      expect(stdout).toContain("result: rendered");
      expect(stdout).toContain("stopped");
      expect(code).toBe(0);
    } finally {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await waitFor(() => descendantPids().length === 0, "the service's runners to exit", 5_000);
  });
});
