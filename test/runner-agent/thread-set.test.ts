/**
 * The ThreadSet on its own, in this process, with real worker threads that
 * import the threaded fixture app: how it treats a call frame whose header is
 * valid but whose arguments are not (the main thread reads only the header;
 * the thread decodes the rest), and that the threads go on serving after it.
 */
import { DefaultSerializer } from "node:v8";
import { afterEach, describe, expect, it } from "vitest";
import { decodeParentMessage, decodeRunnerMessage, encodeMessage } from "../../src/protocol/codec.js";
import { ThreadSet } from "../../src/runner-agent/threads/thread-set.js";
import { threadedEntry } from "../fixtures/threaded-app.js";

const sets: ThreadSet[] = [];
afterEach(() => {
  for (const set of sets.splice(0)) set.close(new Error("test over"));
});

function threadSet(): ThreadSet {
  const reports: string[] = [];
  const set = new ThreadSet({
    count: 2,
    runnerId: "unit-1",
    pool: "threads-unit",
    entry: threadedEntry,
    abortGracePeriod: 1_000,
    output: () => undefined,
    report: (message) => void reports.push(message),
    failed: (detail) => {
      throw new Error(`a thread could not be replaced: ${detail}`);
    },
  });
  sets.push(set);
  return set;
}

/** A V8-path call frame laid out by hand, with whatever `args` is. */
function callFrame(callId: number, functionId: string, args: unknown): Buffer {
  const serializer = new DefaultSerializer();
  serializer.writeRawBytes(Buffer.of(1));
  serializer.writeHeader();
  serializer.writeDouble(callId);
  serializer.writeUint32(0);
  serializer.writeDouble(Infinity);
  serializer.writeValue(functionId);
  serializer.writeValue(args);
  return serializer.releaseBuffer();
}

async function run(set: ThreadSet, frame: Buffer) {
  const header = decodeParentMessage(frame, { args: false });
  if (header.type !== "call") throw new Error("not a call frame");
  return decodeRunnerMessage(await set.run(header, frame));
}

describe("ThreadSet", () => {
  it("runs calls on its threads once every thread has loaded the app", async () => {
    const set = threadSet();
    expect(await set.ready).toEqual({ poolDefined: true });
    const results = await Promise.all([1, 2].map((callId) => run(set, encodeMessage({ type: "call", callId, functionId: "where", args: [] }))));
    expect(results.map((result) => result.type === "result" && result.ok && (result.value as { thread: number }).thread).sort()).toEqual([1, 2]);
    expect(set.loads()).toEqual([0, 0]);
  });

  it("a call whose arguments are not an array fails alone, as a serialization error, and the thread goes on", async () => {
    const set = threadSet();
    await set.ready;
    const failed = await run(set, callFrame(7, "where", { not: "an array" }));
    expect(failed).toMatchObject({ type: "result", callId: 7, ok: false, error: { kind: "serialization" } });
    expect(failed.type === "result" && !failed.ok && failed.error.message).toMatch(/not an array/);
    const after = await run(set, encodeMessage({ type: "call", callId: 8, functionId: "where", args: [] }));
    expect(after).toMatchObject({ type: "result", callId: 8, ok: true, value: { thread: 1 } });
  });
});
