/**
 * infra/fly/fly.toml: it parses, agrees with the example app and the image
 * (port, health check, start, stop signal, Dockerfile), and its [env] is a
 * configuration the example app runs on: the example's parent, started as the
 * image starts it with that environment and the variables Fly sets, renders
 * on runner machines of the Fly emulator sized as fly.toml says.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startFlyEmulator, type FlyEmulator } from "../../src/emulators/fly/emulator.js";
import { waitFor } from "../support/processes.js";
import { parseDockerfile } from "./dockerfile.js";
import { buildImageLayout, EXAMPLE, REPO, type ImageLayout } from "./image-layout.js";
import { parseToml, type TomlTable } from "./toml.js";

const flyToml = parseToml(readFileSync(join(REPO, "infra/fly/fly.toml"), "utf8"));
const dockerfile = parseDockerfile(readFileSync(join(REPO, "infra/docker/Dockerfile"), "utf8"));
const final = dockerfile.stages.at(-1)!;
const serverSource = readFileSync(join(EXAMPLE, "src/server.ts"), "utf8");
const configSource = readFileSync(join(EXAMPLE, "src/config.ts"), "utf8");
const env = flyToml.env as Record<string, string>;
const http = flyToml.http_service as TomlTable;

describe("fly.toml", () => {
  it("parses, names an app, and builds with the Dockerfile that stage-example.sh puts next to it", () => {
    expect(flyToml.app).toMatch(/^[a-z0-9][a-z0-9-]*$/);
    expect((flyToml.build as TomlTable).dockerfile).toBe("Dockerfile");
    const stage = readFileSync(join(REPO, "infra/docker/stage-example.sh"), "utf8");
    const copy = stage.split("\n").find((line) => line.includes("infra/fly/fly.toml"))!;
    expect(copy).toMatch(/^cp .*"\$repo\/infra\/docker\/Dockerfile".*"\$repo\/infra\/fly\/fly\.toml" "\$target\/"$/);
  });

  it("routes to the port the app listens on and the image exposes, and checks an endpoint the app serves", () => {
    expect(typeof http.internal_port).toBe("number");
    expect(env.PORT).toBe(String(http.internal_port));
    // The app's own default is the same port, so the image works without [env] too.
    expect(configSource).toContain(`read.integer("PORT", ${http.internal_port}`);
    expect(final.instructions.filter((instruction) => instruction.keyword === "EXPOSE").map((instruction) => instruction.text)).toEqual([String(http.internal_port)]);
    const checks = http.checks as TomlTable[];
    expect(checks.length).toBeGreaterThan(0);
    for (const check of checks) expect(serverSource).toContain(`"${String(check.method)} ${String(check.path)}"`);
    // No host in [env]: the app listens on every interface (::), which Fly's proxy needs.
    expect(env.HOST).toBeUndefined();
  });

  it("stops the app with a signal it handles, giving it the time its shutdown takes", () => {
    expect(serverSource).toContain(`process.once("${String(flyToml.kill_signal)}"`);
    const timeout = Number(/^(\d+)s$/.exec(String(flyToml.kill_timeout))?.[1]);
    // The server gives in-flight renders the pool's shutdownTimeout (30 s) and exits by itself after 35 s.
    expect(timeout).toBeGreaterThanOrEqual(35);
    expect(serverSource).toContain("35_000");
  });

  it("runs the app on the Fly backend, and the app reads every setting it gives", () => {
    expect(env.FLAME_BACKEND).toBe("fly");
    for (const name of Object.keys(env)) expect(configSource, name).toMatch(new RegExp(`["\`.]${name}\\b`));
    // The token is a secret, never in fly.toml.
    expect(Object.keys(env)).not.toContain("FLY_API_TOKEN");
  });
});

describe("the example app with fly.toml's [env], against the Fly emulator", () => {
  const TOKEN = "fly-deploy-token-for-tests";
  let layout: ImageLayout;
  let emulator: FlyEmulator;
  let parent: ChildProcess | undefined;

  beforeAll(async () => {
    layout = buildImageLayout(dockerfile);
    // Machines run in the image's WORKDIR, with the environment Fly gives them (the emulator adds its own).
    emulator = await startFlyEmulator({
      app: String(flyToml.app),
      token: TOKEN,
      // The deploy token is an app secret, which Fly injects into the app's machines unless they skip secrets.
      secrets: { FLY_API_TOKEN: TOKEN },
      cwd: layout.workdir,
      baseEnv: { PATH: `${dirname(process.execPath)}:/usr/bin:/bin`, HOME: layout.root },
    });
  }, 60_000);

  afterEach(async () => {
    if (parent && parent.exitCode === null && parent.signalCode === null) {
      parent.kill("SIGKILL");
      await once(parent, "exit");
    }
  });

  afterAll(async () => {
    await emulator?.close();
    layout?.remove();
  });

  it("renders on a runner machine sized as fly.toml says, and stops its runners when stopped", async () => {
    const [executable, ...args] = layout.entrypoint;
    // What Fly starts on the app's machine: the image's entrypoint, no command, [env], the secret, Fly's variables.
    parent = spawn(executable!, args, {
      cwd: layout.workdir,
      env: {
        PATH: `${dirname(process.execPath)}:/usr/bin:/bin`,
        HOME: layout.root,
        ...layout.env,
        ...env,
        // Any free port here; that the app and Fly agree on 8080 is checked above.
        PORT: "0",
        FLY_API_TOKEN: emulator.token,
        FLY_API_HOSTNAME: emulator.url,
        FLY_APP_NAME: emulator.app,
        FLY_IMAGE_REF: `registry.fly.io/${emulator.app}:deployment-01`,
        FLY_PRIVATE_IP: "127.0.0.1",
        FLY_REGION: String(flyToml.primary_region),
        FLAME_LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    parent.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    parent.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    let port = 0;
    await waitFor(() => {
      if (parent!.exitCode !== null) throw new Error(`the app exited (${parent!.exitCode}): ${output}`);
      port = Number(/listening on http:\/\/localhost:(\d+) \(backend: fly/.exec(output)?.[1] ?? 0);
      return port > 0;
    }, "the example app to listen", 20_000);

    const response = await fetch(`http://127.0.0.1:${port}/fractal?width=24&height=16&iterations=50`);
    expect(response.status, output).toBe(200);
    expect([...new Uint8Array(await response.arrayBuffer()).subarray(0, 4)]).toEqual([0x89, 0x50, 0x4e, 0x47]);

    const [machine] = emulator.machines();
    expect(machine!.config.guest).toMatchObject({
      cpu_kind: env.FLY_RUNNER_CPU_KIND,
      cpus: Number(env.FLY_RUNNER_CPUS),
      memory_mb: Number(env.FLY_RUNNER_MEMORY_MB),
    });
    // FlyBackend's default command, with the paths the image has: its node, its runner agent, the pool's entry.
    expect(machine!.config.init.cmd).toEqual([
      process.execPath,
      join(layout.workdir, "node_modules/flame-ts/dist/runner-agent/main.js"),
      join(layout.workdir, final.env.FLAME_ENTRY!),
    ]);
    // The app's secrets (FLY_API_TOKEN) stay out of runners.
    expect(machine!.env.FLY_API_TOKEN).toBeUndefined();
    expect(Object.values(machine!.env)).not.toContain(TOKEN);
    expect(emulator.violations()).toEqual([]);

    parent.kill(String(flyToml.kill_signal) as NodeJS.Signals);
    const [code] = (await once(parent, "exit")) as [number | null];
    expect(code, output).toBe(0);
    await waitFor(() => emulator.machines().every((entry) => entry.state === "destroyed"), "the runner machines to be destroyed", 10_000);
  }, 60_000);
});
