/**
 * Summarizes a V8 .cpuprofile (from `node --cpu-prof`): the functions with
 * the most self time, and the inclusive time of flame-ts' own functions.
 *
 *   node --import tsx bench/tools/profile-summary.ts <file.cpuprofile> [top=25]
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const [file, topArgument] = process.argv.slice(2);
if (!file) throw new Error("usage: profile-summary.ts <file.cpuprofile> [top]");
const top = Number(topArgument ?? 25);
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;

// Self time per node from the sample stream (exact intervals, not hit counts).
const selfMicros = new Map<number, number>();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]!;
  selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
}
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const total = [...selfMicros.values()].reduce((sum, value) => sum + value, 0);

const label = (node: ProfileNode) => {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url ? `${url.replace(/^file:\/\/.*?\/(node_modules|dist|bench)\//, "$1/")}:${lineNumber + 1}` : "";
  return `${functionName || "(anonymous)"} ${where}`.trim();
};

// Inclusive time: each node's self time plus its subtree, counted once per function along a path.
const inclusive = new Map<string, number>();
const walk = (id: number, onPath: Set<string>): number => {
  const node = byId.get(id)!;
  let sum = selfMicros.get(id) ?? 0;
  const key = label(node);
  const first = !onPath.has(key);
  if (first) onPath.add(key);
  for (const child of node.children ?? []) sum += walk(child, onPath);
  if (first) {
    onPath.delete(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + sum);
  }
  return sum;
};
walk(profile.nodes[0]!.id, new Set());

const self = new Map<string, number>();
for (const [id, micros] of selfMicros) {
  const key = label(byId.get(id)!);
  self.set(key, (self.get(key) ?? 0) + micros);
}

const percent = (micros: number) => `${((micros / total) * 100).toFixed(1).padStart(5)}%`;
const print = (title: string, entries: Array<[string, number]>) => {
  console.log(`\n${title}`);
  for (const [key, micros] of entries) console.log(`${percent(micros)}  ${(micros / 1000).toFixed(0).padStart(6)} ms  ${key}`);
};
console.log(`${file}: ${(total / 1000).toFixed(0)} ms sampled`);
print(`top ${top} by self time`, [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top));
print(
  `flame-ts functions by inclusive time`,
  [...inclusive.entries()].filter(([key]) => key.includes("dist/")).sort((a, b) => b[1] - a[1]).slice(0, top),
);
