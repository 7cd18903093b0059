/**
 * Every shell script of the repository, and every variant of the EC2 boot
 * script the backend writes, passes shellcheck (the Debian package
 * `shellcheck`). Where shellcheck is not installed the test skips, saying how
 * to install it, unless CI is set: then it fails.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bootScript, type BootScriptInput } from "../../src/backends/ec2/user-data.js";
import { encodeRunnerEnv } from "../../src/protocol/runner-env.js";
import { REPO } from "./image-layout.js";

const INSTALL_HINT = "apt-get update && apt-get install -y shellcheck";
const probe = spawnSync("shellcheck", ["--version"], { encoding: "utf8" });
const installed = probe.status === 0;
const required = Boolean(process.env.CI);
if (!installed && !required) console.warn(`Skipping the shellcheck tests: shellcheck is not installed (${INSTALL_HINT}); CI=1 makes this a failure`);

/** shellcheck's findings for a script (its default checks, every severity), one per line; empty when clean. */
function shellcheck(script: string, name: string): string {
  const result = spawnSync("shellcheck", ["--format=gcc", "--severity=style", "-"], { input: script, encoding: "utf8" });
  if (result.error) throw result.error;
  return result.stdout.replaceAll("-:", `${name}:`) + result.stderr;
}

/** Files of the repository (tracked, or new and not ignored) that are shell scripts: *.sh, or a shell in the #! line. */
function shellScripts(): string[] {
  const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], { cwd: REPO, encoding: "utf8" })
    .split("\0")
    .filter(Boolean);
  return files.filter((file) => {
    if (file.endsWith(".sh")) return true;
    let head: string;
    try {
      head = readFileSync(join(REPO, file), "utf8").slice(0, 100);
    } catch {
      return false; // Deleted in the work tree.
    }
    return /^#!\s*(\/usr\/bin\/env\s+)?(\/bin\/|\/usr\/bin\/)?(ba|da)?sh\b/.test(head);
  });
}

const FLAME_PARENT = encodeRunnerEnv({
  parentUrl: "ws://10.0.1.17:3526",
  runnerId: "images-1-abc123",
  pool: "images",
  token: "a-one-time-token",
  connectTimeout: 20_000,
  heartbeatInterval: 5_000,
});

/** The boot scripts Ec2Backend writes: both token transports, with an image in ECR and elsewhere, and with a runner command. */
const BOOT_SCRIPTS: Record<string, BootScriptInput> = (() => {
  const base = {
    runnerId: "images-1-abc123",
    pool: "images",
    region: "eu-west-1",
    env: { FLAME_ENTRY: "/app/dist/pool.js", FLAME_BUILD_ID: "v42", TRICKY: `it's "$HOME" \`x\` $(echo no)\nline two` },
  };
  const ecrImage = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/image-service:v1";
  const otherImage = "ghcr.io/acme/image-service:v1";
  const command = "cd /opt/app && node node_modules/flame-ts/dist/runner-agent/main.js";
  const userData = { env: { ...base.env, FLAME_PARENT }, parameterName: undefined };
  const ssm = { env: base.env, parameterName: "/flame-ts/images-1-abc123" };
  return {
    "user-data transport, ECR image": { ...base, ...userData, runnerImage: ecrImage, runnerCommand: undefined },
    "user-data transport, other registry": { ...base, ...userData, runnerImage: otherImage, runnerCommand: undefined },
    "ssm transport, ECR image": { ...base, ...ssm, runnerImage: ecrImage, runnerCommand: undefined },
    "ssm transport, other registry": { ...base, ...ssm, runnerImage: otherImage, runnerCommand: undefined },
    "user-data transport, runner command": { ...base, ...userData, runnerImage: undefined, runnerCommand: command },
    "ssm transport, runner command": { ...base, ...ssm, runnerImage: undefined, runnerCommand: command },
  };
})();

describe.skipIf(!installed && !required)("shellcheck", () => {
  if (!installed) {
    it("needs shellcheck", () => {
      throw new Error(`shellcheck is not installed and CI is set: ${INSTALL_HINT}`);
    });
    return;
  }

  it("finds the repository's scripts: .ci/run and infra's", () => {
    expect(shellScripts()).toEqual(expect.arrayContaining([".ci/run", "infra/docker/flame-entrypoint.sh", "infra/docker/stage-example.sh"]));
  });

  it("passes every shell script of the repository", () => {
    const findings = shellScripts().map((file) => shellcheck(readFileSync(join(REPO, file), "utf8"), file)).join("");
    expect(findings).toBe("");
  });

  it.each(Object.entries(BOOT_SCRIPTS))("passes the EC2 boot script: %s", (name, input) => {
    const script = bootScript(input);
    expect(script.startsWith("#!/bin/bash\n")).toBe(true);
    const lines = script.split("\n");
    // SC2016 ("expressions don't expand in single quotes") on an `export NAME='value'` line is the point of
    // the quoting: the value (here one with $HOME and backquotes in it) must stay literal. Any other finding fails.
    const findings = shellcheck(script, "user-data")
      .split("\n")
      .filter(Boolean)
      .filter((finding) => {
        const match = /^user-data:(\d+):\d+: .*\[SC2016\]$/.exec(finding);
        return !(match && /^export [A-Za-z_][A-Za-z0-9_]*='/.test(lines[Number(match[1]) - 1] ?? ""));
      });
    expect(findings, name).toEqual([]);
  });

  it("passes the EC2 boot script whole when no exported value holds a $ or a backquote", () => {
    const input = BOOT_SCRIPTS["ssm transport, ECR image"]!;
    const { TRICKY: _tricky, ...plain } = input.env;
    expect(shellcheck(bootScript({ ...input, env: plain }), "user-data")).toBe("");
  });

  it("reports a script with a problem (the check can fail)", () => {
    expect(shellcheck('#!/bin/sh\nrm -rf $1/\n', "bad")).toMatch(/SC2086/);
  });
});
