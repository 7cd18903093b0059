/**
 * `npx flame-ts fly-emulator` from an app that installed flame-ts' npm
 * package, far from this repository: the package must bring Fly's spec with
 * it, and without the optional ajv peers the command must say how to go on
 * in its own words (--no-validate, not the API's validate: false).
 *
 * The package is built and packed as test/support/packed-package.ts does.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFlyEmulator } from "../../src/emulators/fly/emulator.js";
import { resolveSpecPath, SPEC_ENV_VAR } from "../../src/emulators/fly/openapi.js";
import { waitFor } from "../support/processes.js";
import { appEnvironment, appWithPackage, BUILD_TIMEOUT, INSTALL_TIMEOUT, REPO, registryReachable, run } from "../support/packed-package.js";

const SPEC_IN_PACKAGE = "spec/fly/machines-openapi.json";
const TOKEN = "packaged-emulator-token";
const APP = "flame-emulated";

const registry = await registryReachable("the packaged Fly emulator's install tests");

/** The files `npm pack` would put in the package, without building or writing anything. */
async function packedFileList(): Promise<string[]> {
  const output = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], REPO, 60_000);
  const [pack] = JSON.parse(output) as Array<{ files: Array<{ path: string }> }>;
  return pack!.files.map((file) => file.path);
}

/** A started `npx flame-ts fly-emulator` and everything it prints. */
interface EmulatorCommand {
  child: ChildProcess;
  output: () => string;
}

/** Starts the command in `app`, in its own process group so stopping it reaches npx's children too. */
function startEmulatorCommand(app: string, args: string[]): EmulatorCommand {
  const child = spawn("npx", ["--no", "flame-ts", "fly-emulator", "--port", "0", "--token", TOKEN, "--quiet", ...args], {
    cwd: app,
    env: appEnvironment(),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  return { child, output: () => output };
}

/** Resolves with the URL the command prints once it listens; rejects with its output if it exits first. */
async function listeningUrl(command: EmulatorCommand): Promise<string> {
  let url = "";
  await waitFor(() => {
    url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(command.output())?.[1] ?? "";
    if (url) return true;
    if (command.child.exitCode !== null) throw new Error(`fly-emulator exited (${command.child.exitCode}) before listening:\n${command.output()}`);
    return false;
  }, "fly-emulator to listen", 30_000);
  return url;
}

/** Resolves with the exit code once the command ends by itself. */
async function exitCode(command: EmulatorCommand): Promise<number> {
  await waitFor(() => command.child.exitCode !== null, `fly-emulator to exit; it printed:\n${command.output()}`, 30_000);
  return command.child.exitCode!;
}

/** Whether any process of the group led by `pid` is still there. */
function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops the command's whole process group: SIGTERM (the emulator kills its machines and exits), then SIGKILL. */
async function stopEmulatorCommand(command: EmulatorCommand): Promise<void> {
  const pid = command.child.pid!;
  if (!groupAlive(pid)) return;
  const exited = command.child.exitCode === null && command.child.signalCode === null ? once(command.child, "exit") : Promise.resolve();
  process.kill(-pid, "SIGTERM");
  await waitFor(() => !groupAlive(pid), "fly-emulator's processes to exit", 10_000).catch(() => {
    if (groupAlive(pid)) process.kill(-pid, "SIGKILL");
  });
  await exited;
  await waitFor(() => !groupAlive(pid), "fly-emulator's processes to die", 5_000);
}

/** A request to the Machines API of an emulator at `url`. */
async function machinesApi(url: string, method: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${url}/v1/apps/${APP}/machines`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: await response.json() };
}

/** A create-machine body the spec refuses: guest.cpus is an integer in Fly's spec. */
const INVALID_CREATE = { config: { image: "registry.fly.io/flame-emulated:deployment-test", guest: { cpus: "two" } } };

it("the npm package ships Fly's spec and its notice", async () => {
  const files = await packedFileList();
  expect(files).toContain(SPEC_IN_PACKAGE);
  expect(files).toContain("spec/fly/README.md");
});

it("the emulator reads the repository's own copy of the spec unless told otherwise", () => {
  const saved = process.env[SPEC_ENV_VAR];
  delete process.env[SPEC_ENV_VAR];
  try {
    expect(resolveSpecPath()).toBe(join(REPO, SPEC_IN_PACKAGE));
    expect(resolveSpecPath(join(REPO, "package.json"))).toBe(join(REPO, "package.json"));
  } finally {
    if (saved !== undefined) process.env[SPEC_ENV_VAR] = saved;
  }
});

it("advice on a missing spec names the switches of the interface in use", async () => {
  const specPath = join(REPO, "spec/fly/no-such-spec.json");
  await expect(startFlyEmulator({ specPath })).rejects.toThrow(/not found at .*no-such-spec\.json: pass specPath .* or pass validate: false$/);
  await expect(startFlyEmulator({ specPath, invokedFrom: "cli" })).rejects.toThrow(/pass --spec <file> .* or pass --no-validate$/);
});

describe.skipIf(!registry)("npx flame-ts fly-emulator from an app that installed the package", () => {
  let app: string;

  beforeAll(async () => {
    // Under the system's temp directory: no flame-ts repository, ../shared or node_modules above it.
    app = await appWithPackage("uses-flame-ts");
  }, BUILD_TIMEOUT + INSTALL_TIMEOUT);

  afterAll(() => {
    if (app) rmSync(app, { recursive: true, force: true });
  });

  it("without ajv, refuses to validate and names the command's --no-validate", async () => {
    expect(existsSync(join(app, "node_modules/ajv")), "ajv is an optional peer: npm must not install it").toBe(false);
    const command = startEmulatorCommand(app, []);
    try {
      expect(await exitCode(command)).not.toBe(0);
      expect(command.output()).toContain("install ajv and ajv-formats (npm install -D ajv ajv-formats) or pass --no-validate");
      expect(command.output()).not.toContain("validate: false");
    } finally {
      await stopEmulatorCommand(command);
    }
  });

  it("with --no-validate, starts without ajv and serves the Machines API", async () => {
    const command = startEmulatorCommand(app, ["--no-validate"]);
    try {
      const url = await listeningUrl(command);
      expect(await machinesApi(url, "GET")).toEqual({ status: 200, body: [] });
    } finally {
      await stopEmulatorCommand(command);
    }
  });

  it(
    "once ajv is installed, validates against the spec shipped in the package",
    async () => {
      await run("npm", ["install", "ajv", "ajv-formats", "--no-audit", "--no-fund", "--prefer-offline"], app, INSTALL_TIMEOUT);
      const packagedSpec = join(app, "node_modules/flame-ts", SPEC_IN_PACKAGE);

      const command = startEmulatorCommand(app, []);
      try {
        const url = await listeningUrl(command);
        expect(await machinesApi(url, "GET")).toEqual({ status: 200, body: [] });
        const refused = await machinesApi(url, "POST", INVALID_CREATE);
        expect(refused.status).toBe(400);
        expect(refused.body.error).toMatch(/^request does not match Fly's OpenAPI spec: .*\/config\/guest\/cpus must be integer/);
      } finally {
        await stopEmulatorCommand(command);
      }

      // The spec it used is the package's own: without it, the command says so, in its own words.
      renameSync(packagedSpec, `${packagedSpec}.moved`);
      const withoutSpec = startEmulatorCommand(app, []);
      try {
        expect(await exitCode(withoutSpec)).not.toBe(0);
        expect(withoutSpec.output()).toContain(`spec was not found at ${packagedSpec}`);
        expect(withoutSpec.output()).toMatch(/pass --spec <file> .* or pass --no-validate/);
      } finally {
        await stopEmulatorCommand(withoutSpec);
        renameSync(`${packagedSpec}.moved`, packagedSpec);
      }
    },
    INSTALL_TIMEOUT + 60_000,
  );
});
