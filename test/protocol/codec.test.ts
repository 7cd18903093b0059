/**
 * The codec alone, against anything a peer can put in a frame. Both consumers
 * (the parent's runner.ts, the runner's agent.ts) close the connection on a
 * ProtocolError and let nothing else through; any other exception would
 * escape their socket handlers. So for every input a decoder must return a
 * message or throw ProtocolError, and what it returns must be what was sent.
 *
 * Property-based with fast-check. The seed is fixed so a failure reproduces;
 * FLAME_FUZZ_SEED picks another, FLAME_FUZZ_RUNS runs every property that many times.
 */
import fc from "fast-check";
import { inspect, isDeepStrictEqual } from "node:util";
import { DefaultSerializer, deserialize, serialize } from "node:v8";
import { describe, expect, it } from "vitest";
import { decodeParentMessage, decodeRunnerMessage, encodeBatch, encodeMessage, forEachBatched, framesOf } from "../../src/protocol/codec.js";
import { PROTOCOL_VERSION, type ParentMessage, type RunnerMessage, type SerializedError } from "../../src/protocol/messages.js";
import { ProtocolError } from "../../src/protocol/validate.js";

const SEED = Number(process.env.FLAME_FUZZ_SEED ?? 20_261_202);

function runs(bounded: number): fc.Parameters<unknown> {
  return { seed: SEED, numRuns: process.env.FLAME_FUZZ_RUNS ? Number(process.env.FLAME_FUZZ_RUNS) : bounded };
}

/** For properties whose every run costs milliseconds (3000-level values): more runs find nothing new. */
const FEW_RUNS: fc.Parameters<unknown> = { seed: SEED, numRuns: 10 };

// ---- arbitraries: valid messages ---------------------------------------------

/** What structured clone round-trips (null-prototype objects come back with Object.prototype, so they are left out). */
const userValue = fc.anything({
  maxDepth: 3,
  maxKeys: 4,
  stringUnit: "binary",
  withBigInt: true,
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withSet: true,
  withTypedArray: true,
  withSparseArray: true,
});

const id = fc.maxSafeNat();
/** Any code points, lone surrogates included; short enough for every string limit of the protocol. */
const text = fc.string({ unit: "binary", maxLength: 40 });

const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
const CANCEL_REASONS = ["timeout", "aborted", "stopped"] as const;
const ERROR_KINDS = ["thrown", "unknown-function", "serialization", "aborted", "thread-exited"] as const;

const { serializedError } = fc.letrec<{ serializedError: SerializedError }>((tie) => ({
  serializedError: fc.record(
    {
      kind: fc.constantFrom(...ERROR_KINDS),
      name: text,
      message: text,
      stack: text,
      properties: fc.dictionary(text, userValue, { maxKeys: 3, noNullPrototype: true }),
      // The first alternative is the one used once the depth is reached.
      cause: fc.oneof({ depthSize: "small", maxDepth: 4 }, fc.record({ value: userValue }), tie("serializedError")),
    },
    { requiredKeys: ["kind", "name", "message"], noNullPrototype: true },
  ),
}));

/** Records with a literal `type`, never with a null prototype (V8 would not give one back). */
function message<T>(fields: { [K in keyof T]: fc.Arbitrary<T[K]> }, requiredKeys?: (keyof T)[]): fc.Arbitrary<T> {
  return fc.record(fields, { noNullPrototype: true, ...(requiredKeys ? { requiredKeys } : {}) }) as unknown as fc.Arbitrary<T>;
}

const runnerMessages: Record<string, fc.Arbitrary<RunnerMessage>> = {
  hello: message(
    {
      type: fc.constant("hello" as const),
      protocolVersion: fc.constant(PROTOCOL_VERSION),
      appVersion: text,
      runnerId: text,
      pid: id,
      poolDefined: fc.boolean(),
      entryError: text,
    },
    ["type", "protocolVersion", "appVersion", "runnerId", "pid", "poolDefined"],
  ),
  "result (value)": message({ type: fc.constant("result" as const), callId: id, ok: fc.constant(true as const), value: userValue }),
  "result (error)": message({ type: fc.constant("result" as const), callId: id, ok: fc.constant(false as const), error: serializedError }),
  log: message({ type: fc.constant("log" as const), level: fc.constantFrom(...LOG_LEVELS), text }),
  "idle-check-reply": message({ type: fc.constant("idle-check-reply" as const), checkId: id, shutdown: fc.boolean() }),
};

const parentMessages: Record<string, fc.Arbitrary<ParentMessage>> = {
  welcome: message({ type: fc.constant("welcome" as const) }),
  refuse: message({ type: fc.constant("refuse" as const), reason: text }),
  call: message(
    {
      type: fc.constant("call" as const),
      callId: id,
      functionId: fc.string({ unit: "binary", minLength: 1, maxLength: 40 }),
      args: fc.array(userValue, { maxLength: 4 }),
      // `child: false` is the absence of the flag: it decodes as no `child` at all.
      child: fc.constant(true),
      // Likewise an Infinity timeout is the absence of one.
      timeout: fc.double({ min: 0, noNaN: true, noDefaultInfinity: true }),
    },
    ["type", "callId", "functionId", "args"],
  ),
  cancel: message({ type: fc.constant("cancel" as const), callId: id, reason: fc.constantFrom(...CANCEL_REASONS) }),
  "idle-check": message({ type: fc.constant("idle-check" as const), checkId: id }),
  shutdown: message({ type: fc.constant("shutdown" as const), reason: text }),
};

const anyRunnerMessage = fc.oneof(...Object.values(runnerMessages));
const anyParentMessage = fc.oneof(...Object.values(parentMessages));
const anyValidFrame = fc.oneof(anyRunnerMessage, anyParentMessage).map((sent) => encodeMessage(sent));

// ---- frames encodeMessage would never write ----------------------------------

/** The V8 header (version tag and version) this Node writes. */
const V8_HEADER = serialize(null).subarray(0, 2);

/**
 * A CALL frame laid out field by field as codec.ts documents it, so each field
 * can hold anything (a test below checks this layout against encodeMessage).
 */
function callFrame(fields: { callId: number; flags: number; timeout?: number; functionId: unknown; args: unknown }): Buffer {
  const serializer = new DefaultSerializer();
  serializer.writeRawBytes(Buffer.of(1));
  serializer.writeHeader();
  serializer.writeDouble(fields.callId);
  serializer.writeUint32(fields.flags);
  serializer.writeDouble(fields.timeout ?? Infinity);
  serializer.writeValue(fields.functionId);
  serializer.writeValue(fields.args);
  return serializer.releaseBuffer();
}

/** A RESULT frame laid out field by field: `status` 1 carries a value, 0 a SerializedError. */
function resultFrame(fields: { callId: number; status: number; payload: unknown }): Buffer {
  const serializer = new DefaultSerializer();
  serializer.writeRawBytes(Buffer.of(2));
  serializer.writeHeader();
  serializer.writeDouble(fields.callId);
  serializer.writeUint32(fields.status);
  serializer.writeValue(fields.payload);
  return serializer.releaseBuffer();
}

/** A CONTROL frame holding any value at all as its message. */
function controlFrame(value: unknown): Buffer {
  return Buffer.concat([Buffer.of(0), serialize(value)]);
}

function nested(depth: number): unknown {
  let value: unknown = "bottom";
  for (let level = 0; level < depth; level += 1) value = { next: value };
  return value;
}

// ---- wrong values --------------------------------------------------------------

/** What a required field of `type` must not be; `undefined` (the field is missing) included. */
const notA = (type: "string" | "number" | "boolean") => userValue.filter((value) => typeof value !== type);
const notString = notA("string");
const notBoolean = notA("boolean");
const stringLongerThan = (limit: number) => fc.integer({ min: limit + 1, max: limit + 64 }).map((length) => "x".repeat(length));
const badNumberId = fc.oneof(
  fc.integer({ max: -1 }),
  fc.double({ noNaN: true }).filter((value) => !Number.isSafeInteger(value) || value < 0),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, Number.MAX_SAFE_INTEGER + 1, 0.5),
);
const badId = fc.oneof(notA("number"), badNumberId);
const notIn = (allowed: readonly string[]) =>
  fc.oneof(
    notString,
    fc.string({ unit: "binary" }).filter((value) => !allowed.includes(value)),
    fc.constantFrom("__proto__", "constructor", "toString", "hasOwnProperty", "", ...allowed.map((value) => value.toUpperCase())),
  );
/** For optional fields, where `undefined` is allowed. */
const present = <T>(arbitrary: fc.Arbitrary<T>) => arbitrary.filter((value) => value !== undefined);

/** Frames of a control message with `field` set to each wrong value (or deleted, for `undefined`). */
function withWrongField<T extends object>(valid: fc.Arbitrary<T>, field: string, wrong: fc.Arbitrary<unknown>): fc.Arbitrary<Buffer> {
  return fc.tuple(valid, wrong).map(([sent, value]) => {
    const fields: Record<string, unknown> = { ...(sent as Record<string, unknown>) };
    if (value === undefined) delete fields[field];
    else fields[field] = value;
    return controlFrame(fields);
  });
}

/** A SerializedError with one field (possibly of a cause several levels down) wrong. */
const { bad: badSerializedError } = fc.letrec<{ bad: unknown }>((tie) => ({
  bad: fc.oneof(
    { depthSize: "small", maxDepth: 3 },
    // Not undefined: as a cause, that is no cause at all (a missing error is checked on its own below).
    present(userValue.filter((value) => typeof value !== "object" || value === null || Array.isArray(value))),
    fc.tuple(serializedError, fc.constantFrom("kind", "name", "message", "stack", "properties", "cause")).chain(([error, field]) =>
      fieldWrongFor(field).map((value) => ({ ...error, [field]: value })),
    ),
    // A bad error as the cause of a good one: the validator must look all the way down.
    fc.tuple(serializedError, tie("bad")).map(([error, cause]) => ({ ...error, cause })),
  ),
}));

function fieldWrongFor(field: string): fc.Arbitrary<unknown> {
  switch (field) {
    case "kind":
      return notIn(ERROR_KINDS);
    case "name":
      return fc.oneof(notString, stringLongerThan(4_096));
    case "message":
      return notString;
    case "stack":
      return present(notString);
    case "properties":
    case "cause":
      return present(userValue.filter((value) => typeof value !== "object" || value === null || Array.isArray(value)));
    default:
      throw new Error(`no wrong values for ${field}`);
  }
}

/** [what, which decoder, frames that must be refused]. */
const wrongFields: [string, "runner" | "parent", fc.Arbitrary<Buffer>][] = [
  ["hello.protocolVersion", "runner", withWrongField(runnerMessages.hello!, "protocolVersion", fc.oneof(notA("number"), fc.constantFrom(Number.NaN, Infinity, -Infinity)))],
  ["hello.appVersion", "runner", withWrongField(runnerMessages.hello!, "appVersion", fc.oneof(notString, stringLongerThan(4_096)))],
  ["hello.runnerId", "runner", withWrongField(runnerMessages.hello!, "runnerId", fc.oneof(notString, stringLongerThan(4_096)))],
  ["hello.pid", "runner", withWrongField(runnerMessages.hello!, "pid", badId)],
  ["hello.poolDefined", "runner", withWrongField(runnerMessages.hello!, "poolDefined", notBoolean)],
  ["hello.entryError", "runner", withWrongField(runnerMessages.hello!, "entryError", fc.oneof(present(notString), stringLongerThan(64 * 1_024)))],
  ["log.level", "runner", withWrongField(runnerMessages.log!, "level", notIn(LOG_LEVELS))],
  ["log.text", "runner", withWrongField(runnerMessages.log!, "text", notString)],
  ["idle-check-reply.checkId", "runner", withWrongField(runnerMessages["idle-check-reply"]!, "checkId", badId)],
  ["idle-check-reply.shutdown", "runner", withWrongField(runnerMessages["idle-check-reply"]!, "shutdown", notBoolean)],
  ["result.callId", "runner", fc.tuple(badNumberId, userValue).map(([callId, payload]) => resultFrame({ callId, status: 1, payload }))],
  ["result.ok", "runner", fc.tuple(id, fc.integer({ min: 2, max: 2 ** 32 - 1 }), userValue).map(([callId, status, payload]) => resultFrame({ callId, status, payload }))],
  ["result.error", "runner", fc.tuple(id, badSerializedError).map(([callId, payload]) => resultFrame({ callId, status: 0, payload }))],
  ["refuse.reason", "parent", withWrongField(parentMessages.refuse!, "reason", fc.oneof(notString, stringLongerThan(64 * 1_024)))],
  ["cancel.callId", "parent", withWrongField(parentMessages.cancel!, "callId", badId)],
  ["cancel.reason", "parent", withWrongField(parentMessages.cancel!, "reason", notIn(CANCEL_REASONS))],
  ["idle-check.checkId", "parent", withWrongField(parentMessages["idle-check"]!, "checkId", badId)],
  ["shutdown.reason", "parent", withWrongField(parentMessages.shutdown!, "reason", fc.oneof(notString, stringLongerThan(4_096)))],
  ["call.callId", "parent", fc.tuple(badNumberId, fc.array(userValue)).map(([callId, args]) => callFrame({ callId, flags: 0, functionId: "f", args }))],
  ["call.timeout", "parent", fc.tuple(id, fc.oneof(fc.double({ max: -Number.MIN_VALUE }), fc.constant(Number.NaN))).map(([callId, timeout]) => callFrame({ callId, flags: 0, timeout, functionId: "f", args: [] }))],
  ["call.flags", "parent", fc.tuple(id, fc.integer({ min: 2, max: 2 ** 32 - 1 })).map(([callId, flags]) => callFrame({ callId, flags, functionId: "f", args: [] }))],
  ["call.functionId", "parent", fc.tuple(id, fc.oneof(notString, fc.constant(""), stringLongerThan(1_000))).map(([callId, functionId]) => callFrame({ callId, flags: 0, functionId, args: [] }))],
  ["call.args", "parent", fc.tuple(id, userValue.filter((value) => !Array.isArray(value))).map(([callId, args]) => callFrame({ callId, flags: 0, functionId: "f", args }))],
];

// ---- assertions ----------------------------------------------------------------

const RUNNER_TYPES = ["hello", "result", "log", "idle-check-reply"];
const PARENT_TYPES = ["welcome", "refuse", "call", "cancel", "idle-check", "shutdown"];
const decoders = [
  { name: "decodeRunnerMessage", decode: decodeRunnerMessage as (frame: unknown) => { type: string }, types: RUNNER_TYPES },
  { name: "decodeParentMessage", decode: decodeParentMessage as (frame: unknown) => { type: string }, types: PARENT_TYPES },
];

/** Decodes with both decoders: each returns a message of its own direction or throws ProtocolError; anything else fails the property. */
function expectMessageOrProtocolError(frame: unknown): void {
  for (const { name, decode, types } of decoders) {
    let decoded: { type: string };
    try {
      decoded = decode(frame);
    } catch (error) {
      if (error instanceof ProtocolError) continue;
      throw new Error(`${name} threw ${String(error)} instead of a ProtocolError`, { cause: error });
    }
    expect(types, `${name} returned a message of unknown type`).toContain(decoded.type);
  }
}

function expectProtocolError(decode: (frame: unknown) => unknown, frame: unknown): void {
  let decoded: unknown;
  try {
    decoded = decode(frame);
  } catch (error) {
    if (error instanceof ProtocolError) return;
    throw new Error(`threw ${String(error)} instead of a ProtocolError`, { cause: error });
  }
  throw new Error(`accepted an invalid frame as ${inspect(decoded, { depth: 6 })}`);
}

/** toEqual ignores prototypes, -0 and holes; the user's values must come back exactly. */
function expectSameUserValues(decoded: RunnerMessage | ParentMessage, sent: RunnerMessage | ParentMessage): void {
  if (sent.type === "result" && sent.ok && decoded.type === "result" && decoded.ok) {
    expect(isDeepStrictEqual(decoded.value, sent.value), "the result value is not deep-strict-equal").toBe(true);
  }
  if (sent.type === "call" && decoded.type === "call") {
    expect(isDeepStrictEqual(decoded.args, sent.args), "the call arguments are not deep-strict-equal").toBe(true);
  }
}

// ---- the properties --------------------------------------------------------------

describe("decoding never throws anything but ProtocolError", () => {
  it("on arbitrary bytes", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => expectMessageOrProtocolError(Buffer.from(bytes))), runs(2_000));
  });

  it("on arbitrary bytes after each frame kind and a valid V8 header", () => {
    const kind = fc.oneof(fc.constantFrom(0, 1, 2, 0xff), fc.integer({ min: 0, max: 255 }));
    fc.assert(
      fc.property(kind, fc.uint8Array({ maxLength: 200 }), (first, bytes) =>
        expectMessageOrProtocolError(Buffer.concat([Buffer.of(first), V8_HEADER, bytes])),
      ),
      runs(2_000),
    );
  });

  it("on every truncation of valid frames", () => {
    fc.assert(
      fc.property(anyValidFrame, fc.nat(), (frame, cut) => expectMessageOrProtocolError(frame.subarray(0, cut % frame.byteLength))),
      runs(1_000),
    );
  });

  it("on single-byte mutations of valid frames", () => {
    fc.assert(
      fc.property(anyValidFrame, fc.nat(), fc.integer({ min: 0, max: 255 }), (frame, position, byte) => {
        const mutated = Buffer.from(frame);
        mutated[position % mutated.byteLength] = byte;
        expectMessageOrProtocolError(mutated);
      }),
      runs(1_000),
    );
  });

  it("on V8-serialized arbitrary values wrapped in each frame kind", () => {
    const wrapped = fc.oneof(
      fc.tuple(fc.constantFrom(0, 1, 2), userValue).map(([kind, value]) => Buffer.concat([Buffer.of(kind), serialize(value)])),
      // A bare V8 stream starts with 0xFF: a protocol-1 frame.
      userValue.map((value) => serialize(value)),
      fc.tuple(fc.double(), fc.nat(), userValue, userValue).map(([callId, flags, functionId, args]) => callFrame({ callId, flags, functionId, args })),
      fc.tuple(fc.double(), fc.nat(), userValue).map(([callId, status, payload]) => resultFrame({ callId, status, payload })),
      fc.tuple(fc.constantFrom(...RUNNER_TYPES, ...PARENT_TYPES), fc.dictionary(text, userValue, { noNullPrototype: true })).map(([type, fields]) =>
        controlFrame({ ...fields, type }),
      ),
    );
    fc.assert(fc.property(wrapped, (frame) => expectMessageOrProtocolError(frame)), runs(1_000));
  });

  it("on values that are not a Buffer", () => {
    for (const notAFrame of [undefined, null, "frame", 0, new Uint8Array([0, 0xff, 0x0f, 0x30]), new ArrayBuffer(4), [Buffer.of(0)], {}]) {
      expectProtocolError(decodeRunnerMessage, notAFrame);
      expectProtocolError(decodeParentMessage, notAFrame);
    }
  });
});

describe("every message decodes to what was encoded", () => {
  it("(the test's own frame builders lay frames out as encodeMessage does for values that take V8's path)", () => {
    const call: ParentMessage = { type: "call", callId: 12, functionId: "f", args: [1, { two: 2 }], child: true, timeout: 250 };
    expect(callFrame({ callId: 12, flags: 1, timeout: 250, functionId: "f", args: [1, { two: 2 }] })).toEqual(encodeMessage(call));
    expect(resultFrame({ callId: 12, status: 1, payload: { a: 1 } })).toEqual(encodeMessage({ type: "result", callId: 12, ok: true, value: { a: 1 } }));
    expect(controlFrame({ type: "welcome" })).toEqual(encodeMessage({ type: "welcome" }));
  });

  it.each(Object.entries(runnerMessages))("%s (runner to parent)", (_name, arbitrary) => {
    fc.assert(
      fc.property(arbitrary, (sent) => {
        const decoded = decodeRunnerMessage(encodeMessage(sent));
        expect(decoded).toEqual(sent);
        expectSameUserValues(decoded, sent);
      }),
      runs(200),
    );
  });

  it.each(Object.entries(parentMessages))("%s (parent to runner)", (_name, arbitrary) => {
    fc.assert(
      fc.property(arbitrary, (sent) => {
        const decoded = decodeParentMessage(encodeMessage(sent));
        expect(decoded).toEqual(sent);
        expect(decoded).not.toHaveProperty("argsError");
        expectSameUserValues(decoded, sent);
      }),
      runs(200),
    );
  });

  it("drops fields the protocol does not define", () => {
    const extras = fc.dictionary(fc.string().filter((key) => !["type", "level", "text", "checkId", "shutdown", "reason", "callId"].includes(key)), userValue, {
      minKeys: 1,
      noNullPrototype: true,
    });
    const control = fc.oneof(runnerMessages.log!, runnerMessages["idle-check-reply"]!, parentMessages.cancel!, parentMessages.shutdown!);
    fc.assert(
      fc.property(control, extras, (sent, extra) => {
        const frame = controlFrame({ ...extra, ...sent });
        const decoded = RUNNER_TYPES.includes(sent.type) ? decodeRunnerMessage(frame) : decodeParentMessage(frame);
        expect(Object.keys(decoded).sort()).toEqual(Object.keys(sent).sort());
      }),
      runs(200),
    );
  });

  it("reads a hello of another protocol version only far enough to refuse it", () => {
    const version = fc.double({ noNaN: true, noDefaultInfinity: true }).filter((value) => value !== PROTOCOL_VERSION);
    fc.assert(
      fc.property(version, userValue, (protocolVersion, junk) => {
        for (const frame of [controlFrame({ type: "hello", protocolVersion, pid: junk }), serialize({ type: "hello", protocolVersion, poolDefined: junk })]) {
          const decoded = decodeRunnerMessage(frame);
          expect(decoded).toMatchObject({ type: "hello", protocolVersion, poolDefined: false });
        }
      }),
      runs(200),
    );
  });
});

describe("a field of the wrong type is a ProtocolError", () => {
  it.each(wrongFields)("%s", (_field, direction, frames) => {
    const decode = direction === "runner" ? decodeRunnerMessage : decodeParentMessage;
    fc.assert(fc.property(frames, (frame) => expectProtocolError(decode, frame)), runs(150));
  });

  it("unknown message types, and types of the other direction", () => {
    const unknownType = fc.oneof(
      notString,
      fc.string({ unit: "binary" }),
      fc.constantFrom("__proto__", "constructor", "toString", "HELLO", "result", "call", ...RUNNER_TYPES, ...PARENT_TYPES),
    );
    fc.assert(
      fc.property(unknownType, fc.dictionary(text, userValue, { noNullPrototype: true }), (type, fields) => {
        const frame = controlFrame({ ...fields, type });
        // CALL and RESULT have frames of their own: as control messages they are unknown too.
        if (typeof type !== "string" || !["hello", "log", "idle-check-reply"].includes(type)) expectProtocolError(decodeRunnerMessage, frame);
        if (typeof type !== "string" || !["welcome", "refuse", "cancel", "idle-check", "shutdown"].includes(type)) expectProtocolError(decodeParentMessage, frame);
      }),
      runs(300),
    );
  });

  it("a control message that is not an object", () => {
    const notRecord = userValue.filter((value) => typeof value !== "object" || value === null || Array.isArray(value));
    fc.assert(
      fc.property(notRecord, (value) => {
        expectProtocolError(decodeRunnerMessage, controlFrame(value));
        expectProtocolError(decodeParentMessage, controlFrame(value));
      }),
      runs(200),
    );
  });

  it("unknown frame kinds", () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 254 }), anyValidFrame, (kind, frame) => {
        const relabelled = Buffer.from(frame);
        relabelled[0] = kind;
        expectProtocolError(decodeRunnerMessage, relabelled);
        expectProtocolError(decodeParentMessage, relabelled);
      }),
      runs(200),
    );
    // A protocol-1 frame is only ever a runner's hello.
    expectProtocolError(decodeParentMessage, serialize({ type: "welcome" }));
    expectProtocolError(decodeRunnerMessage, serialize({ type: "log", level: "info", text: "old" }));
  });
});

describe("fields a careless validator would let through", () => {
  it("a result with ok:false and no error", () => {
    expectProtocolError(decodeRunnerMessage, encodeMessage({ type: "result", callId: 1, ok: false } as unknown as RunnerMessage));
    expectProtocolError(decodeRunnerMessage, resultFrame({ callId: 1, status: 0, payload: undefined }));
    expectProtocolError(decodeRunnerMessage, resultFrame({ callId: 1, status: 0, payload: null }));
  });

  it("an error whose stack (or a cause's stack) is not a string", () => {
    const base = { kind: "thrown", name: "Error", message: "m" };
    fc.assert(
      fc.property(present(notString), (stack) => {
        expectProtocolError(decodeRunnerMessage, resultFrame({ callId: 1, status: 0, payload: { ...base, stack } }));
        expectProtocolError(decodeRunnerMessage, resultFrame({ callId: 1, status: 0, payload: { ...base, cause: { ...base, stack } } }));
      }),
      runs(100),
    );
  });

  it("unknown log levels, names of Object.prototype's members included", () => {
    fc.assert(fc.property(notIn(LOG_LEVELS), (level) => expectProtocolError(decodeRunnerMessage, controlFrame({ type: "log", level, text: "t" }))), runs(300));
    for (const level of ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf", "trace", "fatal", "INFO", "warning", ""]) {
      expectProtocolError(decodeRunnerMessage, encodeMessage({ type: "log", level, text: "t" } as unknown as RunnerMessage));
    }
  });

  it('"__proto__" as a log level', () => {
    expectProtocolError(decodeRunnerMessage, encodeMessage({ type: "log", level: "__proto__", text: "t" } as unknown as RunnerMessage));
  });

  it('an own "__proto__" key is a field like any other, never the message\'s prototype', () => {
    for (const smuggled of [{ type: "welcome" }, { type: "log", level: "info", text: "t" }, { type: "shutdown", reason: "r" }]) {
      const message = Object.defineProperty({}, "__proto__", { value: smuggled, enumerable: true });
      expectProtocolError(decodeRunnerMessage, controlFrame(message));
      expectProtocolError(decodeParentMessage, controlFrame(message));
    }
  });

  it("strings at and just over their limits", () => {
    const hello = { type: "hello", protocolVersion: PROTOCOL_VERSION, appVersion: "1", runnerId: "r", pid: 1, poolDefined: true };
    expect(decodeRunnerMessage(controlFrame({ ...hello, appVersion: "v".repeat(4_096) }))).toMatchObject({ type: "hello" });
    expectProtocolError(decodeRunnerMessage, controlFrame({ ...hello, appVersion: "v".repeat(4_097) }));
    expect(decodeRunnerMessage(controlFrame({ ...hello, entryError: "e".repeat(64 * 1_024) }))).toMatchObject({ type: "hello" });
    expectProtocolError(decodeRunnerMessage, controlFrame({ ...hello, entryError: "e".repeat(64 * 1_024 + 1) }));
    expect(decodeParentMessage(callFrame({ callId: 1, flags: 0, functionId: "f".repeat(1_000), args: [] }))).toMatchObject({ type: "call" });
    expectProtocolError(decodeParentMessage, callFrame({ callId: 1, flags: 0, functionId: "f".repeat(1_001), args: [] }));
    expect(decodeParentMessage(controlFrame({ type: "shutdown", reason: "r".repeat(4_096) }))).toMatchObject({ type: "shutdown" });
    expectProtocolError(decodeParentMessage, controlFrame({ type: "shutdown", reason: "r".repeat(4_097) }));
  });

  it("causes nested deeper than the validator allows", () => {
    const chain = (causes: number): unknown => {
      let error: Record<string, unknown> = { kind: "thrown", name: "Error", message: "root" };
      for (let level = 0; level < causes; level += 1) error = { kind: "thrown", name: "Error", message: `level ${level}`, cause: error };
      return error;
    };
    expect(decodeRunnerMessage(resultFrame({ callId: 1, status: 0, payload: chain(16) }))).toMatchObject({ ok: false });
    expectProtocolError(decodeRunnerMessage, resultFrame({ callId: 1, status: 0, payload: chain(17) }));
  });
});

describe("values nested deeper than V8 can decode fail their call, not the connection", () => {
  const DEPTH = 3_000;

  it("V8 encodes 3000 levels but cannot decode them (the premise of these tests)", () => {
    const encoded = serialize(nested(DEPTH));
    expect(() => deserialize(encoded)).toThrow();
  });

  it("a result value: a serialization error for that call id", () => {
    fc.assert(
      fc.property(id, (callId) => {
        const decoded = decodeRunnerMessage(encodeMessage({ type: "result", callId, ok: true, value: nested(DEPTH) }));
        expect(decoded).toMatchObject({ type: "result", callId, ok: false, error: { kind: "serialization", name: "SerializationError" } });
      }),
      FEW_RUNS,
    );
  });

  it("a result error: a serialization error for that call id", () => {
    const error = { kind: "thrown", name: "Error", message: "m", properties: { deep: nested(DEPTH) } } as SerializedError;
    expect(decodeRunnerMessage(encodeMessage({ type: "result", callId: 9, ok: false, error }))).toMatchObject({
      type: "result",
      callId: 9,
      ok: false,
      error: { kind: "serialization" },
    });
  });

  it("call arguments: the call with argsError set", () => {
    fc.assert(
      fc.property(id, fc.boolean(), (callId, child) => {
        const decoded = decodeParentMessage(encodeMessage({ type: "call", callId, functionId: "deep", args: [nested(DEPTH)], ...(child ? { child } : {}) }));
        expect(decoded).toMatchObject({ type: "call", callId, functionId: "deep", args: [] });
        expect(decoded.type === "call" && decoded.argsError).toMatch(/could not decode the arguments of "deep"/);
        expect(decoded.type === "call" && decoded.child).toBe(child ? true : undefined);
      }),
      FEW_RUNS,
    );
  });

  it("a control message: a ProtocolError (the protocol's own fields are not user values)", () => {
    expectProtocolError(decodeRunnerMessage, controlFrame({ type: "log", level: "info", text: "t", extra: nested(DEPTH) }));
    expectProtocolError(decodeParentMessage, controlFrame({ type: "shutdown", reason: "r", extra: nested(DEPTH) }));
    expectProtocolError(decodeRunnerMessage, serialize({ type: "hello", protocolVersion: 1, extra: nested(DEPTH) }));
  });
});

describe("batch frames (several frames in one WebSocket message)", () => {
  const anyRunnerMessage = fc.oneof(...Object.values(runnerMessages));

  it("carry their frames intact and in order, each decoded as if it had come alone", () => {
    fc.assert(
      fc.property(fc.array(anyRunnerMessage, { minLength: 2, maxLength: 12 }), (messages) => {
        const frames = messages.map((message) => encodeMessage(message));
        const carried = framesOf(encodeBatch(frames));
        expect(carried.map((frame) => Buffer.from(frame))).toEqual(frames);
        expect(carried.map((frame) => decodeRunnerMessage(frame))).toEqual(frames.map((frame) => decodeRunnerMessage(frame)));
      }),
      runs(100),
    );
  });

  it("a malformed batch is refused as a whole with ProtocolError, before any of its frames is read", () => {
    const a = encodeMessage({ type: "log", level: "info", text: "a" });
    const batch = encodeBatch([a, a]);
    const cases: Record<string, Buffer> = {
      truncated: batch.subarray(0, batch.byteLength - 1),
      "a length past its end": Buffer.concat([batch.subarray(0, 1), Buffer.from([0xff, 0xff, 0xff, 0x7f]), batch.subarray(5)]),
      "one frame only": encodeBatch([a]),
      empty: Buffer.of(3),
      "a batch inside": encodeBatch([a, batch]),
      "a frame too short": encodeBatch([a, Buffer.of(0)]),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      let visited = 0;
      expect(() => forEachBatched(bytes, () => void (visited += 1)), name).toThrow(ProtocolError);
      expect(visited, name).toBe(0);
    }
  });

  it("random bytes behind the batch kind either split into frames that are not batches, or fail with ProtocolError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const message = Buffer.concat([Buffer.of(3), bytes]);
        try {
          for (const frame of framesOf(message)) expect(frame[0]).not.toBe(3);
        } catch (error) {
          expect(error).toBeInstanceOf(ProtocolError);
        }
      }),
      runs(300),
    );
  });
});
