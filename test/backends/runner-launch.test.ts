/**
 * The environment and command line every backend starts a runner with
 * (src/backends/runner-launch.ts), alone.
 */
import { describe, expect, it } from "vitest";
import { agentEntry } from "../../src/package-paths.js";
import { runnerCommand, runnerEnvironment } from "../../src/backends/runner-launch.js";

describe("runnerEnvironment", () => {
  const request = { env: { FLAME_PARENT: "encoded" }, entry: "/app/dist/main.js" };

  it("holds FLAME_PARENT, FLAME_ENTRY, the parent's FLAME_BUILD_ID and the user's env, nothing else of the parent's", () => {
    const parent = { FLAME_BUILD_ID: "v42", FLY_API_TOKEN: "secret", HOME: "/root" };
    expect(runnerEnvironment(request, { MODE: "runner" }, parent)).toEqual({
      FLAME_PARENT: "encoded",
      FLAME_ENTRY: "/app/dist/main.js",
      FLAME_BUILD_ID: "v42",
      MODE: "runner",
    });
  });

  it("leaves out FLAME_ENTRY without an entry, and FLAME_BUILD_ID when the parent has none", () => {
    expect(runnerEnvironment({ env: { FLAME_PARENT: "encoded" }, entry: undefined }, {}, { FLAME_BUILD_ID: "" })).toEqual({ FLAME_PARENT: "encoded" });
  });

  it("lets the user's env set the build id, but never the entry or the pool's variables", () => {
    const extra = { FLAME_BUILD_ID: "mine", FLAME_ENTRY: "/elsewhere.js", FLAME_PARENT: "forged" };
    expect(runnerEnvironment(request, extra, { FLAME_BUILD_ID: "parent's" })).toEqual({
      FLAME_PARENT: "encoded",
      FLAME_ENTRY: "/app/dist/main.js",
      FLAME_BUILD_ID: "mine",
    });
  });
});

describe("runnerCommand", () => {
  it("runs the agent with the parent's node and flags, then the entry", () => {
    expect(runnerCommand("/app/main.js")).toEqual([process.execPath, ...process.execArgv, agentEntry(), "/app/main.js"]);
    expect(runnerCommand(undefined)).toEqual([process.execPath, ...process.execArgv, agentEntry()]);
  });

  it("takes another node and other flags", () => {
    expect(runnerCommand("/app/main.js", { execPath: "/opt/node", execArgv: ["--import", "tsx"] })).toEqual(["/opt/node", "--import", "tsx", agentEntry(), "/app/main.js"]);
    expect(runnerCommand("/app/main.js", { execArgv: [] })).toEqual([process.execPath, agentEntry(), "/app/main.js"]);
  });
});
