/**
 * What a case produces, and how the run prints it: one table row per
 * comparison of flame-ts with a baseline, and the same figures as JSON.
 */
import { availableParallelism, cpus } from "node:os";
import { median, ratios } from "./stats.js";

/** A measured figure: the median over repetitions, and the p99 where per-operation samples exist. */
export interface Figure {
  median: number;
  p99?: number;
}

/** flame-ts against one baseline, measured in the same repetitions. */
export interface Comparison {
  baseline: string;
  flame: Figure;
  other: Figure;
  /** Median of the per-repetition ratios flame-ts / baseline. */
  ratio: number;
  /** The issue's target, if it sets one for this row. */
  target?: { text: string; met: boolean };
  /** Anything a reader needs to read the row (e.g. a speed-up). */
  note?: string;
  /** The per-repetition figures behind the medians (repetition i of each was run back to back). */
  samples: { flame: number[]; other: number[]; ratios: number[] };
}

export interface ComparisonOptions {
  /** Per-repetition p99s, when the repetitions had per-operation samples. */
  flameP99?: number[];
  otherP99?: number[];
  /** Judges the target from the ratio and the flame-ts median. */
  target?: (ratio: number, flameMedian: number) => { text: string; met: boolean };
  note?: (ratio: number) => string;
}

/** Builds a comparison from interleaved per-repetition figures: medians, and the median per-repetition ratio. */
export function compare(baseline: string, flame: number[], other: number[], options: ComparisonOptions = {}): Comparison {
  const perRepetition = ratios(flame, other);
  const ratio = median(perRepetition);
  const figure = (values: number[], p99s?: number[]): Figure => (p99s ? { median: median(values), p99: median(p99s) } : { median: median(values) });
  return {
    baseline,
    flame: figure(flame, options.flameP99),
    other: figure(other, options.otherP99),
    ratio,
    ...(options.target ? { target: options.target(ratio, median(flame)) } : {}),
    ...(options.note ? { note: options.note(ratio) } : {}),
    samples: { flame, other, ratios: perRepetition },
  };
}

export interface CaseResult {
  id: string;
  title: string;
  /** What is measured, with its unit, e.g. "round trip (ms)". */
  metric: string;
  /** How the figures format: "ms", "s", "rate" (per second), "KiB", "MiB". */
  unit: "ms" | "s" | "rate" | "KiB" | "MiB";
  better: "lower" | "higher";
  comparisons: Comparison[];
  /** Repetitions measured (after warm-up) and what one repetition is. */
  repetitions: number;
  perRepetition: string;
}

export interface SkippedCase {
  id: string;
  reason: string;
}

export interface RunMeta {
  date: string;
  node: string;
  platform: string;
  cpu: string;
  cores: number;
  mode: "quick" | "full";
  durationSeconds: number;
  /** How the runners were started (checked on a runner): no TypeScript loader. */
  runnerExecArgv: string[];
}

export function machineMeta(): Pick<RunMeta, "date" | "node" | "platform" | "cpu" | "cores"> {
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    cores: availableParallelism(),
  };
}

export function formatFigure(value: number, unit: CaseResult["unit"]): string {
  if (!Number.isFinite(value)) return "n/a";
  switch (unit) {
    case "ms":
      return value >= 100 ? `${value.toFixed(0)} ms` : value >= 10 ? `${value.toFixed(1)} ms` : value >= 1 ? `${value.toFixed(2)} ms` : `${(value * 1000).toFixed(0)} µs`;
    case "s":
      return `${value.toFixed(2)} s`;
    case "rate":
      return `${Math.round(value).toLocaleString("en-US")}/s`;
    case "KiB":
      return `${value.toFixed(1)} KiB`;
    case "MiB":
      return `${value.toFixed(1)} MiB`;
  }
}

function formatPair(figure: Figure, unit: CaseResult["unit"]): string {
  const median = formatFigure(figure.median, unit);
  return figure.p99 === undefined ? median : `${median} (p99 ${formatFigure(figure.p99, unit)})`;
}

/** The results as a Markdown table (it reads as plain text on a terminal too). */
export function formatTable(results: CaseResult[], meta: RunMeta): string {
  const header = ["Case", "Metric", "flame-ts", "Baseline", "Baseline figure", "Ratio", "Target"];
  const rows: string[][] = [];
  for (const result of results) {
    for (const comparison of result.comparisons) {
      const target = comparison.target ? `${comparison.target.text} ${comparison.target.met ? "✓" : "✗ missed"}` : "";
      rows.push([
        result.title,
        result.metric,
        formatPair(comparison.flame, result.unit),
        comparison.baseline,
        formatPair(comparison.other, result.unit),
        `${comparison.ratio.toFixed(2)}x${comparison.note ? ` (${comparison.note})` : ""}`,
        target,
      ]);
    }
  }
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(" | ")} |`;
  return [
    `flame-ts benchmarks, ${meta.mode} mode: ${meta.date.slice(0, 10)}, Node ${meta.node}, ${meta.cores} cores (${meta.cpu}), ${meta.platform}`,
    "Ratio: flame-ts / baseline, the median of per-repetition ratios (times: lower is better; rates: higher is better).",
    "",
    line(header),
    line(widths.map((width) => "-".repeat(width))),
    ...rows.map(line),
  ].join("\n");
}

/**
 * A latency case's comparison with the raw ws echo (`wss` with `tls`) of the
 * same payload, against `targetRatio` (the warm round trip's 1.2x, a large
 * payload's 1.5x).
 */
export function wsEchoLatency(
  payloadBytes: number,
  samples: { flame: { median: number; p99: number }[]; ws: { median: number; p99: number }[] },
  tls = false,
  targetRatio = 1.5,
): Comparison {
  return compare(`raw ${tls ? "wss" : "ws"} echo (${payloadBytes} B)`, samples.flame.map((s) => s.median), samples.ws.map((s) => s.median), {
    flameP99: samples.flame.map((s) => s.p99),
    otherP99: samples.ws.map((s) => s.p99),
    target: (ratio) => ({ text: `<= ${targetRatio}x`, met: ratio <= targetRatio }),
  });
}
