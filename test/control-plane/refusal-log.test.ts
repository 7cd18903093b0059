import { describe, expect, it } from "vitest";
import type { Logger } from "../../src/log.js";
import { RefusalLog } from "../../src/control-plane/refusal-log.js";

function warnings(): { logger: Logger; lines: { fields: Record<string, unknown>; message: string }[] } {
  const lines: { fields: Record<string, unknown>; message: string }[] = [];
  const ignore = () => undefined;
  return { lines, logger: { debug: ignore, info: ignore, error: ignore, warn: (fields, message) => lines.push({ fields, message }) } };
}

describe("refusal warnings", () => {
  it("logs each reason at most once per interval, then reports how many it kept quiet", () => {
    let now = 0;
    const { logger, lines } = warnings();
    const log = new RefusalLog(logger, 10_000, () => now);
    log.refused("unauthorized", "10.0.0.1:1");
    for (let peer = 2; peer <= 6; peer += 1) log.refused("unauthorized", `10.0.0.1:${peer}`);
    log.refused("connection-limit", "10.0.0.2:1");
    expect(lines.map((line) => line.fields)).toEqual([
      { reason: "unauthorized", peer: "10.0.0.1:1" },
      { reason: "connection-limit", peer: "10.0.0.2:1" },
    ]);
    now = 9_999;
    log.refused("unauthorized", "10.0.0.1:7");
    expect(lines).toHaveLength(2);
    now = 10_000;
    log.refused("unauthorized", "10.0.0.1:8");
    expect(lines[2]!.fields).toEqual({ reason: "unauthorized", peer: "10.0.0.1:8", suppressed: 6 });
    expect(lines[2]!.message).toContain("10.0.0.1:8");
    expect(lines[2]!.message).toContain("6 more");
  });
});
