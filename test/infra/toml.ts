/**
 * A TOML reader for the subset fly.toml files use: tables (`[a.b]`), arrays
 * of tables (`[[a.b]]`), `key = value` with basic and literal strings,
 * integers, floats, booleans and single-line arrays of those, and comments.
 * Anything else (inline tables, multi-line strings or arrays, dotted keys,
 * dates) is an error naming the line, so the test never reads a file it only
 * half understands. No TOML package is a dependency of this project.
 */

export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

/** Parses `text`; throws with the line number on anything outside the subset or malformed. */
export function parseToml(text: string): TomlTable {
  const root: TomlTable = {};
  let current = root;
  text.split("\n").forEach((raw, index) => {
    const fail = (message: string): never => {
      throw new Error(`TOML line ${index + 1}: ${message}: ${raw.trim()}`);
    };
    const line = stripComment(raw, fail).trim();
    if (line === "") return;
    const arrayTable = /^\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]$/.exec(line);
    const table = /^\[\s*([A-Za-z0-9_.-]+)\s*\]$/.exec(line);
    if (arrayTable || table) {
      const path = (arrayTable ?? table)![1]!.split(".");
      let node = root;
      for (const key of path.slice(0, -1)) {
        const next = node[key];
        // A dotted header walks into the last element of an array of tables, as TOML says.
        node = (Array.isArray(next) ? next.at(-1) : next ?? (node[key] = {})) as TomlTable;
        if (typeof node !== "object" || Array.isArray(node)) fail(`${key} is not a table`);
      }
      const last = path.at(-1)!;
      if (arrayTable) {
        const list = (node[last] ??= []) as TomlValue[];
        if (!Array.isArray(list)) fail(`${last} is not an array of tables`);
        current = {};
        list.push(current);
      } else {
        if (node[last] !== undefined && (typeof node[last] !== "object" || Array.isArray(node[last]))) fail(`${last} is defined twice`);
        current = (node[last] ??= {}) as TomlTable;
      }
      return;
    }
    const assignment = /^([A-Za-z0-9_-]+)\s*=\s*(.+)$/.exec(line);
    if (!assignment) fail("expected `key = value` or a table header");
    const [, key, valueText] = assignment!;
    if (key! in current) fail(`${key} is defined twice`);
    const { value, rest } = parseValue(valueText!, fail);
    if (rest.trim() !== "") fail("unexpected text after the value");
    current[key!] = value;
  });
  return root;
}

/** Drops a `#` comment that is not inside a string. */
function stripComment(line: string, fail: (message: string) => never): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const char = line[i]!;
    if (quote) {
      if (char === "\\" && quote === '"') i++;
      else if (char === quote) quote = undefined;
    } else if (char === '"' || char === "'") {
      quote = char;
    } else if (char === "#") {
      return line.slice(0, i);
    }
  }
  if (quote) fail("unterminated string");
  return line;
}

function parseValue(text: string, fail: (message: string) => never): { value: TomlValue; rest: string } {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('"')) {
    const match = /^"((?:[^"\\]|\\["\\nt])*)"/.exec(trimmed) ?? fail("malformed string");
    const value = match[1]!.replace(/\\(["\\nt])/g, (_all, escaped: string) => ({ n: "\n", t: "\t" })[escaped] ?? escaped);
    return { value, rest: trimmed.slice(match[0].length) };
  }
  if (trimmed.startsWith("'")) {
    const end = trimmed.indexOf("'", 1);
    if (end === -1) fail("unterminated literal string");
    return { value: trimmed.slice(1, end), rest: trimmed.slice(end + 1) };
  }
  if (trimmed.startsWith("[")) {
    const values: TomlValue[] = [];
    let rest = trimmed.slice(1).trimStart();
    while (!rest.startsWith("]")) {
      if (rest === "") fail("arrays must be on one line");
      const parsed = parseValue(rest, fail);
      values.push(parsed.value);
      rest = parsed.rest.trimStart();
      if (rest.startsWith(",")) rest = rest.slice(1).trimStart();
      else if (!rest.startsWith("]")) fail("expected , or ] in an array");
    }
    return { value: values, rest: rest.slice(1) };
  }
  if (trimmed.startsWith("{")) fail("inline tables are not supported by this reader");
  const word = /^[^\s,\]]+/.exec(trimmed)?.[0] ?? fail("missing value");
  const rest = trimmed.slice(word.length);
  if (word === "true" || word === "false") return { value: word === "true", rest };
  if (/^[+-]?\d[\d_]*$/.test(word)) return { value: Number(word.replaceAll("_", "")), rest };
  if (/^[+-]?\d[\d_]*(\.\d[\d_]*)?([eE][+-]?\d+)?$/.test(word)) return { value: Number(word.replaceAll("_", "")), rest };
  return fail(`unsupported value ${word}`);
}
