/**
 * `flame-ts reap`: lists the runners a backend still has (left behind by a
 * crashed parent) and, with --yes, destroys them. A dry run by default.
 */
import { parseArgs } from "node:util";
import type { ListedRunner } from "../backends/backend.js";
import { resolveTargets, TARGET_USAGE } from "./targets.js";

export const REAP_USAGE = `Usage: flame-ts reap (--entry <module> | --backend fly|ec2|kubernetes) [--pool <name>] [--parent <id>] [--yes]

Lists the runners the backend still has and, with --yes, destroys them.
Runners of a parent that is alive are listed too: pass --parent with the
crashed parent's id (the "parent" column) to destroy only its runners.

${TARGET_USAGE}
  --parent <id>       only runners started by this parent
  --yes               destroy them (without it, nothing is changed)
`;

export async function reapCommand(argv: string[], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      entry: { type: "string" },
      backend: { type: "string" },
      pool: { type: "string" },
      parent: { type: "string" },
      yes: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    out.write(REAP_USAGE);
    return 0;
  }
  let failures = 0;
  let found = 0;
  for (const target of await resolveTargets(values)) {
    const listed = (await target.backend.list(target.pool ? { pool: target.pool } : {})).filter(
      (runner) => values.parent === undefined || runner.parentId === values.parent,
    );
    found += listed.length;
    out.write(`${target.backend.name} backend${target.pool ? `, pool "${target.pool}"` : ""}: ${listed.length} runner(s)\n`);
    for (const runner of listed) {
      out.write(`  ${describe(runner)}`);
      if (!values.yes) {
        out.write("\n");
        continue;
      }
      try {
        await target.backend.terminate({ runnerId: runner.runnerId, providerId: runner.providerId });
        out.write("  destroyed\n");
      } catch (error) {
        failures += 1;
        out.write(`  NOT destroyed: ${(error as Error).message}\n`);
      }
    }
  }
  if (!values.yes && found > 0) out.write(`dry run: nothing was destroyed; run again with --yes to destroy ${found} runner(s)\n`);
  return failures > 0 ? 1 : 0;
}

function describe(runner: ListedRunner): string {
  return `runner ${runner.runnerId}  id ${runner.providerId}  pool ${runner.pool}  parent ${runner.parentId}  state ${runner.state}`;
}
