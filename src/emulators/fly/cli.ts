/**
 * The `fly-emulator` command: runs the Fly Machines API emulator in the
 * foreground for local development and prints the environment that points a
 * parent's FlyBackend at it, so app code runs unchanged.
 */
import { parseArgs } from "node:util";
import { startFlyEmulator, type FlyEmulator, type FlyEmulatorOptions } from "./emulator.js";

/** Usage text of the command. */
export const FLY_EMULATOR_USAGE = `Usage: flame-ts fly-emulator [options]

Runs a Fly Machines API emulator on 127.0.0.1; each machine is a local process.

Options:
  --port <n>         port to listen on (default: any free port)
  --app <name>       app the emulator serves (default: flame-emulated)
  --token <token>    API token it accepts (default: a random one, printed)
  --spec <path>      Fly's OpenAPI spec (default: $FLY_OPENAPI_SPEC, else the copy
                     flame-ts ships in spec/fly/machines-openapi.json)
  --no-validate      do not check requests against the spec (no ajv needed)
  --no-rate-limits   do not enforce Fly's rate limits
  --quiet            do not copy machines' output to stderr
`;

/** Emulator options from the command's arguments. Throws on unknown or malformed ones. */
export function parseFlyEmulatorArgs(argv: string[]): FlyEmulatorOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      port: { type: "string" },
      app: { type: "string" },
      token: { type: "string" },
      spec: { type: "string" },
      "no-validate": { type: "boolean" },
      "no-rate-limits": { type: "boolean" },
      quiet: { type: "boolean" },
    },
  });
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65_535)) {
    throw new Error(`--port must be a port number, got ${JSON.stringify(values.port)}`);
  }
  return {
    ...(port !== undefined ? { port } : {}),
    ...(values.app ? { app: values.app } : {}),
    ...(values.token ? { token: values.token } : {}),
    ...(values.spec ? { specPath: values.spec } : {}),
    validate: !values["no-validate"],
    rateLimits: !values["no-rate-limits"],
    echoOutput: !values.quiet,
  };
}

/**
 * The shell lines that point a parent at `emulator`. FLY_PRIVATE_IP is the
 * loopback address because the emulator's machines are local processes.
 */
export function describeFlyEmulator(emulator: FlyEmulator): string {
  return [
    `Fly Machines API emulator listening on ${emulator.url} (app "${emulator.app}")`,
    "Point a parent's FlyBackend at it with:",
    `  export FLY_API_HOSTNAME=${emulator.url}`,
    `  export FLY_API_TOKEN=${emulator.token}`,
    `  export FLY_APP_NAME=${emulator.app}`,
    "  export FLY_IMAGE_REF=local-development",
    "  export FLY_PRIVATE_IP=127.0.0.1",
    "",
  ].join("\n");
}

/** Runs the command until SIGINT or SIGTERM, then kills every machine and exits. */
export async function runFlyEmulatorCommand(argv: string[]): Promise<FlyEmulator> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(FLY_EMULATOR_USAGE);
    process.exit(0);
  }
  // invokedFrom: errors about a missing ajv or spec then suggest --no-validate, not the API's validate: false.
  const emulator = await startFlyEmulator({ ...parseFlyEmulatorArgs(argv), invokedFrom: "cli" });
  process.stdout.write(describeFlyEmulator(emulator));
  const shutdown = () => {
    void emulator.close().then(() => process.exit(0));
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
  return emulator;
}
