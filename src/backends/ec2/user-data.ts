/**
 * The boot script (EC2 user data) of a runner instance: export the runner's
 * environment, run the runner agent, and power the instance off when it
 * exits, whatever the reason. The instance is launched with
 * `InstanceInitiatedShutdownBehavior: terminate`, so powering off ends it: a
 * runner never outlives its agent.
 */
import { RUNNER_ENV_VAR } from "../../protocol/runner-env.js";

/** EC2 refuses user data over 16 KB (before base64). */
export const USER_DATA_LIMIT = 16 * 1024;

export interface BootScriptInput {
  runnerId: string;
  pool: string;
  /** Exported before the runner starts; FLAME_PARENT is among them unless it comes from `parameterName`. */
  env: Record<string, string>;
  /** SecureString parameter to read FLAME_PARENT from, then delete (`tokenTransport: "ssm"`). */
  parameterName: string | undefined;
  /** Region for the AWS CLI calls (SSM, ECR). */
  region: string;
  /** Run this container image with Docker... */
  runnerImage: string | undefined;
  /** ...or this shell command. */
  runnerCommand: string | undefined;
}

/** Quotes `value` as one bash word. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** The ECR registry and its region when `image` is in ECR (so the script must log in first). */
export function ecrRegistry(image: string): { registry: string; region: string } | undefined {
  const match = /^(\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?)\//.exec(image);
  return match ? { registry: match[1]!, region: match[2]! } : undefined;
}

/** The default boot script for one runner. */
export function bootScript(input: BootScriptInput): string {
  const exports = Object.entries(input.env).map(([name, value]) => `export ${name}=${shellQuote(value)}`);
  const lines = [
    "#!/bin/bash",
    `# flame-ts runner ${input.runnerId} of pool ${input.pool}, written by Ec2Backend.`,
    "# Runs once at first boot: starts the runner agent, and powers the instance off",
    "# (which terminates it) when the agent exits, whatever the reason.",
    "set -uo pipefail",
    "flame_log() { echo \"[flame-ts] $*\" >&2; }",
    "flame_poweroff() { trap - EXIT; flame_log \"$1; powering off\"; poweroff; exit 0; }",
    // Whatever ends this script (a failed step, an unset variable) powers the machine off.
    "trap 'flame_poweroff \"the boot script stopped early\"' EXIT",
    ...exports,
  ];
  if (input.parameterName !== undefined) lines.push(...readParameter(input.parameterName, input.region));
  lines.push(
    "flame_runner() {",
    ...(input.runnerCommand !== undefined ? [`  ${input.runnerCommand}`] : dockerRunner(input)),
    "}",
    // In a subshell, so that an `exit` in a custom runner command cannot skip the power-off.
    "( flame_runner )",
    'flame_poweroff "the runner exited with status $?"',
    "",
  );
  return lines.join("\n");
}

/**
 * Reads FLAME_PARENT from the SSM parameter, then deletes it: the token inside
 * is for one connection, and nothing else on this machine should find it.
 */
function readParameter(name: string, region: string): string[] {
  const aws = `aws ssm --region ${shellQuote(region)}`;
  return [
    `flame_parameter=${shellQuote(name)}`,
    `if ! ${RUNNER_ENV_VAR}="$(${aws} get-parameter --name "$flame_parameter" --with-decryption --query Parameter.Value --output text)"; then`,
    '  flame_poweroff "could not read the boot parameter $flame_parameter (does the instance profile allow ssm:GetParameter on it?)"',
    "fi",
    `export ${RUNNER_ENV_VAR}`,
    `${aws} delete-parameter --name "$flame_parameter" || flame_log "could not delete the boot parameter $flame_parameter; the parent deletes it when the runner ends"`,
  ];
}

/** Installs and starts Docker (Amazon Linux), logs in to ECR when needed, and runs the image with host networking. */
function dockerRunner(input: BootScriptInput): string[] {
  const image = input.runnerImage!;
  const ecr = ecrRegistry(image);
  const passed = Object.keys(input.env);
  if (input.parameterName !== undefined && !passed.includes(RUNNER_ENV_VAR)) passed.push(RUNNER_ENV_VAR);
  return [
    "  if ! command -v docker >/dev/null 2>&1; then dnf install -y docker || return 1; fi",
    "  systemctl start docker || return 1",
    ...(ecr
      ? [
          `  aws ecr get-login-password --region ${shellQuote(ecr.region)} | docker login --username AWS --password-stdin ${shellQuote(ecr.registry)} || return 1`,
        ]
      : []),
    // `-e NAME` passes the value from this shell's environment: the token never shows on a command line.
    `  docker run --rm --network host --name flame-runner ${passed.map((name) => `-e ${name}`).join(" ")} ${shellQuote(image)}`,
  ];
}
