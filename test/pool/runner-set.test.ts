/**
 * Routing without a scan (RunnerSet's load buckets), against the definition
 * it replaces: the least-loaded runner that takes calls, with a free slot.
 * Real Runners on fake connections, driven by random sequences of what moves
 * a runner between buckets: calls placed and answered, drains and resumes,
 * sockets that begin to close or close, runners added and removed.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Runner, type InFlightCall, type RunnerEvents } from "../../src/pool/runner.js";
import { RunnerSet } from "../../src/pool/runner-set.js";
import { encodeMessage } from "../../src/protocol/codec.js";
import { FakeConnection } from "../support/fake-connection.js";

const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const MAX_CONCURRENCY = 4;

interface Rig {
  set: RunnerSet;
  runners: Array<{ runner: Runner; connection: FakeConnection }>;
  nextCallId: number;
}

function rig(): Rig {
  const set = new RunnerSet();
  return { set, runners: [], nextCallId: 1 };
}

function addRunner(r: Rig): void {
  const events: RunnerEvents = {
    callFinished: () => undefined,
    changed: (runner) => r.set.update(runner),
    stuck: () => undefined,
    exited: (runner) => r.set.delete(runner),
  };
  const runner = new Runner(`runner-${r.runners.length}`, events, silent, 1_000);
  r.set.add(runner);
  const connection = new FakeConnection();
  runner.attach(connection.asSocket(), 60_000);
  runner.markReady();
  r.runners.push({ runner, connection });
}

function place(r: Rig, runner: Runner): void {
  const callId = r.nextCallId++;
  const call: InFlightCall = { callId, functionId: "work", child: false, abandoned: false, settle: () => undefined };
  runner.startCall(call, encodeMessage({ type: "call", callId, functionId: "work", args: [] }));
}

/** Frames leave at the end of the tick they were sent in (protocol/coalesce.ts): resolves once they have reached the fake runners. */
function sent(): Promise<void> {
  return new Promise((resolve) => process.nextTick(resolve));
}

/** The definition: the lowest load among runners that take calls and have a free slot. */
function lowestFreeLoad(r: Rig): number | undefined {
  let lowest: number | undefined;
  for (const { runner } of r.runners) {
    if (!runner.acceptsCalls || runner.load >= MAX_CONCURRENCY) continue;
    if (lowest === undefined || runner.load < lowest) lowest = runner.load;
  }
  return lowest;
}

type Step =
  | { kind: "route" }
  | { kind: "answer"; runner: number; pick: number }
  | { kind: "drain"; runner: number }
  | { kind: "resume"; runner: number }
  | { kind: "closing"; runner: number }
  | { kind: "close"; runner: number }
  | { kind: "add" };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ kind: "route" as const }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("answer" as const), runner: fc.nat(), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("drain" as const), runner: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("resume" as const), runner: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("closing" as const), runner: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("close" as const), runner: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: "add" as const }) },
);

describe("RunnerSet routing", () => {
  it("always picks a runner with the lowest load among those that take calls and have a free slot, and counts the active ones", async () => {
    let answered = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 50 }), fc.array(step, { minLength: 20, maxLength: 300 }), async (initial, steps) => {
        const r = rig();
        for (let i = 0; i < initial; i++) addRunner(r);
        for (const s of steps) {
          const entry = "runner" in s ? r.runners[s.runner % r.runners.length] : undefined;
          switch (s.kind) {
            case "route": {
              const expected = lowestFreeLoad(r);
              const picked = r.set.leastLoaded(MAX_CONCURRENCY);
              expect(picked?.load).toBe(expected);
              if (picked) {
                expect(picked.acceptsCalls).toBe(true);
                place(r, picked);
                await sent();
              }
              break;
            }
            case "answer": {
              // Among the runners with calls running, so that most answer steps move one.
              const busy = r.runners.filter(({ connection }) => connection.running.size > 0);
              const connection = busy[s.runner % Math.max(busy.length, 1)]?.connection;
              if (!connection) break;
              const running = [...connection.running.keys()];
              connection.answer(running[s.pick % running.length]!, null);
              answered += 1;
              break;
            }
            case "drain":
              entry!.runner.drain("idle");
              break;
            case "resume":
              entry!.runner.resume();
              break;
            case "closing":
              // ws says CLOSING before it emits "close": the runner takes no calls from that moment.
              if (entry!.connection.readyState === 1) entry!.connection.readyState = 2;
              break;
            case "close":
              entry!.connection.terminate();
              break;
            case "add":
              addRunner(r);
              break;
          }
        }
        expect(r.set.leastLoaded(MAX_CONCURRENCY)?.load).toBe(lowestFreeLoad(r));
        // The count kept as runners change is the count of ready and booting runners.
        expect(r.set.activeCount()).toBe(r.runners.filter(({ runner }) => runner.state === "ready" || runner.state === "booting").length);
      }),
      { numRuns: 300 },
    );
    // The runs did move runners down as well as up.
    expect(answered).toBeGreaterThan(1_000);
  });

  it("with 50 runners, spreads calls evenly and fills every slot before saying none is free", async () => {
    const r = rig();
    for (let i = 0; i < 50; i++) addRunner(r);
    for (let i = 0; i < 50 * MAX_CONCURRENCY; i++) {
      const runner = r.set.leastLoaded(MAX_CONCURRENCY)!;
      expect(runner.load).toBe(Math.floor(i / 50));
      place(r, runner);
    }
    expect(r.set.leastLoaded(MAX_CONCURRENCY)).toBeUndefined();
    await sent();
    // One slot frees on the 37th runner: it is the one routing finds.
    const freed = r.runners[36]!;
    freed.connection.answer([...freed.connection.running.keys()][0]!, null);
    expect(r.set.leastLoaded(MAX_CONCURRENCY)).toBe(freed.runner);
  });

  it("a removed runner is never picked, whatever its load", () => {
    const r = rig();
    addRunner(r);
    addRunner(r);
    const [first, second] = r.runners;
    place(r, second!.runner);
    r.set.delete(first!.runner);
    expect(r.set.leastLoaded(MAX_CONCURRENCY)).toBe(second!.runner);
  });
});
