/**
 * A reader for the Dockerfiles and .dockerignore files of infra/docker: enough
 * of Docker's syntax to check a build without a Docker engine (there is none
 * where the tests run). Instructions are split into stages, with ARG
 * substitution in FROM, ENV and COPY, and flags (--from, --chmod) separated.
 */

export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  keyword: string;
  /** The text after the keyword, continuation lines joined. */
  text: string;
  /** 1-based line of the keyword. */
  line: number;
}

export interface CopyInstruction {
  from: string | undefined;
  chmod: string | undefined;
  sources: string[];
  destination: string;
  line: number;
}

export interface Stage {
  /** The image after ARG substitution, e.g. node:20-slim. */
  image: string;
  /** The name after AS, if any. */
  name: string | undefined;
  instructions: Instruction[];
  /** The stage's WORKDIR when each instruction runs is not tracked: the last WORKDIR of the stage. */
  workdir: string | undefined;
  /** ENV of the stage, ARGs substituted. */
  env: Record<string, string>;
  copies: CopyInstruction[];
  /** RUN commands, continuation lines joined. */
  runs: string[];
  /** The last USER, if any. */
  user: string | undefined;
  /** ENTRYPOINT and CMD in exec (JSON) form; undefined when absent. A shell form is an error. */
  entrypoint: string[] | undefined;
  cmd: string[] | undefined;
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  globalArgs: Record<string, string | undefined>;
  stages: Stage[];
}

/** Reads a Dockerfile: comments and blank lines dropped, `\` continuations joined. */
export function parseDockerfile(text: string): Dockerfile {
  const instructions = splitInstructions(text);
  const globalArgs: Record<string, string | undefined> = {};
  const stages: Stage[] = [];
  let stageArgs: Record<string, string | undefined> = {};
  for (const instruction of instructions) {
    const { keyword, text: rest } = instruction;
    const stage = stages.at(-1);
    if (keyword === "FROM") {
      const words = rest.split(/\s+/);
      const image = substitute(words[0]!, globalArgs);
      const name = words[1]?.toUpperCase() === "AS" ? words[2] : undefined;
      stages.push({ image, name, instructions: [], workdir: undefined, env: {}, copies: [], runs: [], user: undefined, entrypoint: undefined, cmd: undefined });
      stageArgs = {};
      continue;
    }
    if (!stage) {
      if (keyword !== "ARG") throw new Error(`line ${instruction.line}: only ARG may come before the first FROM, got ${keyword}`);
      const [name, value] = splitAssignment(rest);
      globalArgs[name] = value;
      continue;
    }
    stage.instructions.push(instruction);
    const scope = { ...stageArgs, ...stage.env };
    switch (keyword) {
      case "ARG": {
        const [name, value] = splitAssignment(rest);
        // An ARG without a value inside a stage takes the global default.
        stageArgs[name] = value ?? globalArgs[name];
        break;
      }
      case "ENV":
        for (const [name, value] of parseEnv(rest)) stage.env[name] = substitute(value, scope);
        break;
      case "WORKDIR":
        stage.workdir = substitute(rest.trim(), scope);
        break;
      case "USER":
        stage.user = substitute(rest.trim(), scope);
        break;
      case "RUN":
        stage.runs.push(rest);
        break;
      case "COPY":
      case "ADD": {
        const words = rest.split(/\s+/).map((word) => substitute(word, scope));
        const flags = words.filter((word) => word.startsWith("--"));
        const paths = words.filter((word) => !word.startsWith("--"));
        const flag = (name: string) => flags.find((word) => word.startsWith(`--${name}=`))?.slice(name.length + 3);
        if (paths.length < 2) throw new Error(`line ${instruction.line}: ${keyword} needs a source and a destination`);
        stage.copies.push({ from: flag("from"), chmod: flag("chmod"), sources: paths.slice(0, -1), destination: paths.at(-1)!, line: instruction.line });
        break;
      }
      case "ENTRYPOINT":
      case "CMD": {
        let parsed: unknown;
        try {
          parsed = JSON.parse(rest);
        } catch {
          throw new Error(`line ${instruction.line}: ${keyword} must use the exec (JSON) form, so signals reach the process: ${rest}`);
        }
        if (!Array.isArray(parsed) || !parsed.every((word) => typeof word === "string")) throw new Error(`line ${instruction.line}: ${keyword} is not a list of strings`);
        if (keyword === "ENTRYPOINT") stage.entrypoint = parsed as string[];
        else stage.cmd = parsed as string[];
        break;
      }
    }
  }
  return { globalArgs, stages };
}

function splitInstructions(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending: { text: string; line: number } | undefined;
  text.split("\n").forEach((raw, index) => {
    const line = raw.trimEnd();
    // Comments (parser directives included) are whole lines; inside a continuation they are skipped too, as Docker does.
    if (/^\s*#/.test(line) || (pending === undefined && line.trim() === "")) return;
    const continued = line.endsWith("\\");
    const body = continued ? line.slice(0, -1) : line;
    pending = pending ? { text: `${pending.text} ${body.trim()}`, line: pending.line } : { text: body.trim(), line: index + 1 };
    if (continued) return;
    const match = /^(\S+)\s*(.*)$/.exec(pending.text)!;
    instructions.push({ keyword: match[1]!.toUpperCase(), text: match[2]!, line: pending.line });
    pending = undefined;
  });
  if (pending) throw new Error(`line ${pending.line}: the Dockerfile ends inside a continued instruction`);
  return instructions;
}

function splitAssignment(text: string): [string, string | undefined] {
  const eq = text.indexOf("=");
  return eq === -1 ? [text.trim(), undefined] : [text.slice(0, eq).trim(), text.slice(eq + 1).trim()];
}

/** `ENV A=1 B="two words"`, or the legacy `ENV A value`. */
function parseEnv(text: string): Array<[string, string]> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(text)) {
    const [name, ...value] = text.split(/\s+/);
    return [[name!, value.join(" ")]];
  }
  const pairs: Array<[string, string]> = [];
  const pattern = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g;
  for (const match of text.matchAll(pattern)) {
    const value = match[2]!.startsWith('"') ? match[2]!.slice(1, -1).replace(/\\(.)/g, "$1") : match[2]!;
    pairs.push([match[1]!, value]);
  }
  return pairs;
}

/** `${NAME}`, `$NAME` and `${NAME:-default}`, as Docker expands them in FROM, ENV, COPY, WORKDIR and USER. */
export function substitute(text: string, scope: Record<string, string | undefined>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_match, braced, fallback, bare) => {
    const value = scope[braced ?? bare];
    return value !== undefined && value !== "" ? value : (fallback ?? "");
  });
}

/** The stage a `COPY --from=` names (by name or index). */
export function stageNamed(dockerfile: Dockerfile, reference: string): Stage | undefined {
  return /^\d+$/.test(reference) ? dockerfile.stages[Number(reference)] : dockerfile.stages.find((stage) => stage.name === reference);
}

/**
 * Whether `.dockerignore` patterns exclude `path` (relative to the context,
 * with `/`): Go filepath.Match per segment, `**` for any number of segments,
 * a pattern excluding a directory excludes what is inside, `!` re-includes,
 * the last matching pattern wins.
 */
export function isIgnored(patterns: string[], path: string): boolean {
  let ignored = false;
  for (const raw of patterns) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const negated = line.startsWith("!");
    const pattern = (negated ? line.slice(1) : line).replace(/^\/+/, "").replace(/\/+$/, "");
    const regex = new RegExp(
      `^${pattern
        .split("/")
        .map((segment) => (segment === "**" ? "(?:[^/]+/)*" : `${segmentRegex(segment)}/`))
        .join("")
        .replace(/\/$/, "")}(?:/.*)?$`,
    );
    if (regex.test(path)) ignored = !negated;
  }
  return ignored;
}

function segmentRegex(segment: string): string {
  return segment
    .split("")
    .map((char) => (char === "*" ? "[^/]*" : char === "?" ? "[^/]" : char.replace(/[.+^${}()|[\]\\]/g, "\\$&")))
    .join("");
}
