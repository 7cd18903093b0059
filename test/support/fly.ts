/** Helpers for tests of FlyBackend against the Fly Machines API emulator. */
import { fileURLToPath } from "node:url";
import { FlyBackend, type FlyBackendOptions } from "../../src/backends/fly.js";
import { startFlyEmulator, type FlyEmulator, type FlyEmulatorOptions } from "../../src/emulators/fly/emulator.js";
import { fixtureEntry } from "../fixtures/app.js";
import { MIRROR_EXEC_ARGV } from "./backends.js";

/** The image tests pretend to deploy; the parent's FLY_IMAGE_REF must match it for runners' app versions to agree. */
export const TEST_IMAGE = "registry.fly.io/flame-emulated:deployment-test";

export const AGENT_MAIN = fileURLToPath(new URL("../../src/runner-agent/main.ts", import.meta.url));

/** What an emulated machine runs: the runner agent, from the suite's JavaScript copy of the sources (backends.ts), loading the test app. */
export function runnerCommand(entry = fixtureEntry): string[] {
  return [process.execPath, ...MIRROR_EXEC_ARGV, AGENT_MAIN, entry];
}

/** Makes this process look like a parent deployed on Fly from TEST_IMAGE (its app version includes the image). */
export function pretendParentOnFly(): void {
  process.env.FLY_IMAGE_REF = TEST_IMAGE;
  delete process.env.FLAME_BUILD_ID;
}

export function startTestEmulator(options: FlyEmulatorOptions = {}): Promise<FlyEmulator> {
  return startFlyEmulator({ cwd: fileURLToPath(new URL("../..", import.meta.url)), ...options });
}

/** A FlyBackend pointed at `emulator`, with runners dialing back over loopback. */
export function testFlyBackend(emulator: FlyEmulator, options: FlyBackendOptions = {}): FlyBackend {
  return new FlyBackend({
    token: emulator.token,
    app: emulator.app,
    baseUrl: emulator.url,
    image: TEST_IMAGE,
    init: { cmd: runnerCommand() },
    controlPlane: { host: "127.0.0.1", advertisedHost: "127.0.0.1" },
    requestTimeout: 5_000,
    ...options,
  });
}

/** Machines not destroyed yet. */
export function liveMachines(emulator: FlyEmulator) {
  return emulator.machines().filter((machine) => machine.state !== "destroyed");
}
