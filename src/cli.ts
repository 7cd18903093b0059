#!/usr/bin/env node
/**
 * The `flame-ts` command. Each subcommand loads only what it needs, so
 * `flame-ts runner` starts as fast as the agent itself.
 */
const USAGE = `Usage: flame-ts <command> [options]

Commands:
  runner [entry]        run the runner agent (what a runner machine runs); reads FLAME_PARENT,
                        imports the app's entry module (argument or FLAME_ENTRY)
  reap [opts]           list runners left behind by a crashed parent; destroy them with --yes
  doctor [opts]         check a backend's configuration: credentials, permissions, the parent's address
  fly-emulator [opts]   run a local Fly Machines API emulator
  k8s-emulator [opts]   run a local Kubernetes API emulator (pods are local processes)
Run "flame-ts <command> --help" for a command's options.
  help                  show this text
`;

const RUNNER_USAGE = `Usage: flame-ts runner [entry]

The runner agent: what a runner machine runs. A flame-ts backend starts it with
FLAME_PARENT set (the parent's address, this runner's id and one-time token);
it imports the app's entry module (the argument, else FLAME_ENTRY), dials the
parent, runs calls, and exits when the parent shuts it down or is gone.
Not meant to be started by hand. Exit codes are listed in the README
("Runner exit codes").
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "runner": {
      if (rest[0] === "--help" || rest[0] === "-h") {
        process.stdout.write(RUNNER_USAGE);
        return 0;
      }
      const { runAgent } = await import("./runner-agent/run.js");
      return runAgent(rest[0]);
    }
    case "reap": {
      const { reapCommand } = await import("./cli/reap.js");
      return reapCommand(rest);
    }
    case "doctor": {
      const { doctorCommand } = await import("./cli/doctor.js");
      return doctorCommand(rest);
    }
    case "fly-emulator": {
      const { runFlyEmulatorCommand } = await import("./emulators/fly/cli.js");
      // It keeps serving until SIGINT or SIGTERM.
      await runFlyEmulatorCommand(rest);
      return 0;
    }
    case "k8s-emulator": {
      const { runK8sEmulatorCommand } = await import("./emulators/kubernetes/cli.js");
      // It keeps serving until SIGINT or SIGTERM.
      await runK8sEmulatorCommand(rest);
      return 0;
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`flame-ts: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`flame-ts: ${(error as Error).message}\n`);
  process.exitCode = 2;
}
