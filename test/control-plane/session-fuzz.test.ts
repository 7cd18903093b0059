/**
 * The parent under attack by a runner that authenticated. The pool's backend
 * here starts no process: each "runner" it provisions is a WebSocket client
 * in this process that dials the parent with its one-time token and sends one
 * hostile frame: instead of its hello, right behind it, or after its welcome.
 * The parent must cut that connection and fail only what was on it (the call
 * in flight, or the boot, which is then retried), while a second pool with a
 * real runner process keeps answering and nothing is thrown uncaught.
 *
 * Property-based with fast-check. The seed is fixed so a failure reproduces;
 * FLAME_FUZZ_SEED picks another, FLAME_FUZZ_RUNS sets the cases per property.
 */
import fc from "fast-check";
import { EventEmitter } from "node:events";
import { serialize } from "node:v8";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { Backend, ListedRunner, ProvisionedRunner, ProvisionRequest } from "../../src/backends/backend.js";
import { BootError, RunnerExitedError, VersionMismatchError } from "../../src/errors.js";
import type { Logger } from "../../src/log.js";
import { decodeParentMessage, decodeRunnerMessage, encodeMessage, framesOf, type DecodedCall } from "../../src/protocol/codec.js";
import { PROTOCOL_VERSION, type RunnerMessage } from "../../src/protocol/messages.js";
import { decodeRunnerEnv, RUNNER_ENV_VAR } from "../../src/protocol/runner-env.js";
import { ProtocolError } from "../../src/protocol/validate.js";
import { appVersion } from "../../src/runtime.js";
import { makePool } from "../fixtures/app.js";
import { testProcessBackend } from "../support/backends.js";
import { keepProcessesAcrossTests } from "../support/no-leftover-processes.js";

keepProcessesAcrossTests();

const SEED = Number(process.env.FLAME_FUZZ_SEED ?? 20_261_203);
const RUNS = process.env.FLAME_FUZZ_RUNS ? Number(process.env.FLAME_FUZZ_RUNS) : undefined;
/** Longest wait for any one step; every step ends on an event long before. */
const STEP_TIMEOUT = 5_000;

// ---- what a hostile runner sends ---------------------------------------------

/**
 * One hostile thing on a runner's connection. `garbage` is described rather
 * than held, so a counterexample prints in one line, not as megabytes.
 */
type Attack =
  | { kind: "binary"; frame: Buffer }
  | { kind: "text"; text: string }
  | { kind: "garbage"; shape: "random" | "truncated-log" | "long-hello"; megabytes: number; firstByte: number }
  /** Bytes written under ws, straight onto the TCP socket: a frame WebSocket itself forbids. */
  | { kind: "raw"; bytes: Buffer };

function send(socket: WebSocket, attack: Attack, runnerId: string): void {
  switch (attack.kind) {
    case "binary":
      return socket.send(attack.frame, { binary: true });
    case "text":
      return socket.send(attack.text, { binary: false });
    case "garbage":
      return socket.send(garbage(attack, runnerId), { binary: true });
    case "raw":
      rawSocket(socket).write(attack.bytes);
  }
}

/** A masked client WebSocket frame (FIN set) with a zero mask key, so the payload goes as written. */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const length = payload.byteLength;
  const header =
    length < 126
      ? Buffer.of(0x80 | opcode, 0x80 | length)
      : length < 0x10000
        ? Buffer.of(0x80 | opcode, 0x80 | 126, length >> 8, length & 0xff)
        : Buffer.concat([Buffer.of(0x80 | opcode, 0x80 | 127), bigEndian64(length)]);
  return Buffer.concat([header, Buffer.alloc(4), payload]);
}

function bigEndian64(value: number): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(BigInt(value));
  return bytes;
}

/** The bytes of `attack` on the wire, for writing in one go with what precedes it. */
function wireBytes(attack: Attack, runnerId: string): Buffer {
  switch (attack.kind) {
    case "binary":
      return clientFrame(0x2, attack.frame);
    case "text":
      return clientFrame(0x1, Buffer.from(attack.text, "utf8"));
    case "garbage":
      return clientFrame(0x2, garbage(attack, runnerId));
    case "raw":
      return attack.bytes;
  }
}

function rawSocket(socket: WebSocket): { write(bytes: Buffer): void } {
  return (socket as unknown as { _socket: { write(bytes: Buffer): void } })._socket;
}

/** Several megabytes that are no valid frame: the listener's maxPayload (256 MiB) is too big to reach in a test. */
function garbage(attack: Extract<Attack, { kind: "garbage" }>, runnerId: string): Buffer {
  const size = attack.megabytes * 1024 * 1024;
  switch (attack.shape) {
    case "random": {
      const frame = Buffer.alloc(size, Buffer.from("\x00\xff\x0fo\"\x04type\"\x05hello\xfe\x80"));
      frame[0] = attack.firstByte;
      return frame;
    }
    case "truncated-log": {
      const frame = encodeMessage({ type: "log", level: "info", text: "x".repeat(size) });
      return frame.subarray(0, frame.byteLength - 1);
    }
    case "long-hello":
      return encodeMessage({ type: "hello", protocolVersion: PROTOCOL_VERSION, appVersion: "v".repeat(size), runnerId, pid: 1, poolDefined: true });
  }
}

/** A CONTROL frame holding any value as its message (encodeMessage picks the layout by `type`, which may be anything here). */
function controlFrame(value: unknown): Buffer {
  return Buffer.concat([Buffer.of(0), serialize(value)]);
}

const userValue = fc.anything({ maxDepth: 2, withBigInt: true, withDate: true, withMap: true, withSet: true, withTypedArray: true });
const id = fc.maxSafeNat();
const validRunnerMessage: fc.Arbitrary<RunnerMessage> = fc.oneof(
  fc.record({
    type: fc.constant("hello" as const),
    protocolVersion: fc.constant(PROTOCOL_VERSION),
    appVersion: fc.string(),
    runnerId: fc.string(),
    pid: id,
    poolDefined: fc.boolean(),
  }),
  fc.record({ type: fc.constant("result" as const), callId: id, ok: fc.constant(true as const), value: userValue }),
  fc.record({
    type: fc.constant("result" as const),
    callId: id,
    ok: fc.constant(false as const),
    error: fc.record({ kind: fc.constantFrom("thrown" as const, "serialization" as const), name: fc.string(), message: fc.string() }),
  }),
  fc.record({ type: fc.constant("log" as const), level: fc.constantFrom("debug" as const, "info" as const, "warn" as const, "error" as const), text: fc.string() }),
  fc.record({ type: fc.constant("idle-check-reply" as const), checkId: id, shutdown: fc.boolean() }),
);
const validFrame = validRunnerMessage.map((message) => encodeMessage(message));

/** A control message with one field (its type included) replaced by any value; results get a broken id or error. */
const wrongField = fc.oneof(
  fc
    .tuple(validRunnerMessage.filter((message) => message.type !== "result"), fc.nat(), userValue)
    .map(([message, pick, value]) => {
      const keys = Object.keys(message);
      return controlFrame({ ...message, [keys[pick % keys.length]!]: value });
    }),
  fc
    .tuple(fc.oneof(fc.integer({ max: -1 }), fc.constantFrom(0.5, Number.NaN, Infinity, 2 ** 53)), userValue)
    .map(([callId, value]) => encodeMessage({ type: "result", callId, ok: true, value })),
  fc.tuple(id, userValue).map(([callId, error]) => encodeMessage({ type: "result", callId, ok: false, error } as RunnerMessage)),
);

const unknownType = fc
  .oneof(fc.string(), fc.constantFrom("welcome", "call", "cancel", "shutdown", "refuse", "idle-check", "__proto__", "HELLO"))
  .filter((type) => !["hello", "result", "log", "idle-check-reply"].includes(type))
  .map((type) => controlFrame({ type, reason: "r", callId: 1, level: "info", text: "t" }));

const maskKey = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((bytes) => Buffer.from(bytes));
/** A masked client frame header with no payload. */
const header = (first: number, mask: Buffer) => Buffer.concat([Buffer.of(first, 0x80), mask]);
/** Frames ws must refuse from a client (RFC 6455 section 5), with a zero mask so payloads read as written. */
const invalidWebSocketFrame = fc.oneof(
  fc.tuple(fc.constantFrom(3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf), maskKey).map(([opcode, mask]) => header(0x80 | opcode, mask)),
  fc.tuple(fc.constantFrom(0x40, 0x20, 0x10, 0x70), fc.constantFrom(1, 2), maskKey).map(([reserved, opcode, mask]) => header(0x80 | reserved | opcode, mask)),
  fc.constantFrom(1, 2, 8, 9, 10).map((opcode) => Buffer.of(0x80 | opcode, 0x00)),
  maskKey.map((mask) => header(0x80, mask)),
  fc.tuple(fc.constantFrom(8, 9, 10), maskKey).map(([opcode, mask]) => header(opcode, mask)),
  fc.tuple(fc.constantFrom(9, 10), fc.integer({ min: 126, max: 600 })).map(([opcode, length]) =>
    Buffer.concat([Buffer.of(0x80 | opcode, 0x80 | 126, length >> 8, length & 0xff), Buffer.alloc(4), Buffer.alloc(length)]),
  ),
  fc.constantFrom(2n ** 28n + 1n, 2n ** 40n, 2n ** 63n).map((length) => {
    const frame = Buffer.alloc(14);
    frame[0] = 0x82;
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(length, 2);
    return frame;
  }),
  fc.constantFrom([0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]).map((text) =>
    Buffer.concat([Buffer.of(0x81, 0x80 | text.length), Buffer.alloc(4), Buffer.from(text)]),
  ),
  fc.constantFrom(999, 1004, 1005, 1006, 1015, 2000, 5000).map((code) => Buffer.concat([Buffer.of(0x88, 0x82), Buffer.alloc(4), Buffer.of(code >> 8, code & 0xff)])),
  fc.constant(Buffer.concat([Buffer.of(0x88, 0x81), Buffer.alloc(4), Buffer.of(3)])),
  maskKey.map((mask) => Buffer.concat([header(0x02, mask), header(0x82, mask)])),
);

const attack: fc.Arbitrary<Attack> = fc.oneof(
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes): Attack => ({ kind: "binary", frame: Buffer.from(bytes) })) },
  { weight: 2, arbitrary: fc.tuple(validFrame, fc.nat()).map(([frame, cut]): Attack => ({ kind: "binary", frame: frame.subarray(0, cut % frame.byteLength) })) },
  {
    weight: 2,
    arbitrary: fc.tuple(validFrame, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([frame, position, byte]): Attack => {
      const mutated = Buffer.from(frame);
      mutated[position % mutated.byteLength] = byte;
      return { kind: "binary", frame: mutated };
    }),
  },
  { weight: 3, arbitrary: wrongField.map((frame): Attack => ({ kind: "binary", frame })) },
  { weight: 1, arbitrary: unknownType.map((frame): Attack => ({ kind: "binary", frame })) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }).map((text): Attack => ({ kind: "text", text })) },
  { weight: 2, arbitrary: invalidWebSocketFrame.map((bytes): Attack => ({ kind: "raw", bytes })) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("garbage" as const),
      shape: fc.constantFrom("random" as const, "truncated-log" as const, "long-hello" as const),
      megabytes: fc.integer({ min: 2, max: 6 }),
      firstByte: fc.constantFrom(0, 1, 2, 0xff),
    }),
  },
);

/** The frames the spec names, run first whatever the seed. */
const NAMED_ATTACKS: Attack[] = [
  { kind: "raw", bytes: Buffer.from([0x83, 0x80, 0, 0, 0, 0]) },
  { kind: "text", text: "x" },
  { kind: "garbage", shape: "random", megabytes: 4, firstByte: 0 },
];

/** What the codec says of a binary frame (text and raw attacks never reach it). */
function codecVerdict(attack: Attack): RunnerMessage | "rejected" | "not a frame" {
  if (attack.kind !== "binary" && attack.kind !== "garbage") return "not a frame";
  try {
    return decodeRunnerMessage(attack.kind === "binary" ? attack.frame : garbage(attack, "fuzz-runner"));
  } catch (error) {
    if (error instanceof ProtocolError) return "rejected";
    throw error;
  }
}

/** After the welcome, only what the codec rejects (a valid log or result is no attack). */
const afterWelcomeAttack = attack.filter((candidate) => typeof codecVerdict(candidate) === "string");
/** As the first frame, anything but a hello is an attack (a hello of another version is a refusal, tested elsewhere). */
const openingAttack = attack.filter((candidate) => {
  const verdict = codecVerdict(candidate);
  return typeof verdict === "string" || verdict.type !== "hello";
});

// ---- the fake runners ------------------------------------------------------------

/** How a fake runner behaves. */
interface Plan {
  /** Sent instead of the hello. */
  opening?: Attack;
  /** Sent right behind the hello, in the same write, so it reaches the parent before the welcome goes out. */
  behindHello?: Attack;
  /** Answer calls (with their first argument); otherwise leave them in flight. */
  answerCalls: boolean;
}

/** A runner that is a WebSocket client of the parent, in this process. */
class FakeRunner {
  readonly runnerId: string;
  readonly socket: WebSocket;
  /** Resolves when the connection is gone, with its close code. */
  readonly closed: Promise<number>;
  welcomed = false;
  /** Frames from the parent that did not decode: the parent must only ever send valid ones. */
  readonly invalidFromParent: string[] = [];
  private readonly calls: DecodedCall[] = [];
  private readonly callArrived = new EventEmitter();

  constructor(request: ProvisionRequest, plan: Plan) {
    const boot = decodeRunnerEnv(request.env[RUNNER_ENV_VAR]!);
    this.runnerId = boot.runnerId;
    this.socket = new WebSocket(boot.parentUrl, {
      headers: { authorization: `Bearer ${boot.token}`, "x-flame-runner": boot.runnerId },
      perMessageDeflate: false,
    });
    // The parent cutting the connection (a reset, a close code ws dislikes) is the outcome under test.
    this.socket.on("error", () => undefined);
    this.closed = new Promise((resolve) => this.socket.once("close", (code: number) => resolve(code)));
    this.socket.once("open", () => {
      if (plan.opening) return send(this.socket, plan.opening, this.runnerId);
      // The version the parent computes for the pool's entry, so this hello is accepted.
      const hello = encodeMessage({
        type: "hello",
        protocolVersion: PROTOCOL_VERSION,
        appVersion: appVersion(request.entry),
        runnerId: this.runnerId,
        pid: process.pid,
        poolDefined: true,
      });
      if (!plan.behindHello) return this.socket.send(hello);
      rawSocket(this.socket).write(Buffer.concat([clientFrame(0x2, hello), wireBytes(plan.behindHello, this.runnerId)]));
    });
    this.socket.on("message", (data: Buffer, isBinary: boolean) => {
      let messages;
      try {
        messages = isBinary ? framesOf(data).map((frame) => decodeParentMessage(frame)) : [decodeParentMessage(undefined)];
      } catch (error) {
        this.invalidFromParent.push((error as Error).message);
        return;
      }
      for (const message of messages) {
        if (message.type === "welcome") this.welcomed = true;
        if (message.type !== "call") continue;
        this.calls.push(message);
        this.callArrived.emit("call");
        if (plan.answerCalls) this.socket.send(encodeMessage({ type: "result", callId: message.callId, ok: true, value: message.args[0] }));
      }
    });
  }

  /** Resolves once the parent has put a call on this runner. */
  async firstCall(): Promise<DecodedCall> {
    if (this.calls.length === 0) await new Promise((resolve) => this.callArrived.once("call", resolve));
    return this.calls[0]!;
  }

  attack(attack: Attack): void {
    send(this.socket, attack, this.runnerId);
  }
}

/** A Backend whose runners are FakeRunners: it sees lifecycles only, as a real backend does. */
class FakeRunnerBackend implements Backend {
  readonly name = "fake-runner";
  /** How the next runner behaves; consumed by that runner. */
  nextPlan: Plan | undefined;
  /** How runners behave when no plan is set. */
  defaultPlan: Plan = { answerCalls: false };
  private readonly live = new Map<string, FakeRunner>();
  private readonly unclaimed: FakeRunner[] = [];
  private readonly provisioned = new EventEmitter();
  private count = 0;

  async provision(request: ProvisionRequest): Promise<ProvisionedRunner> {
    const runner = new FakeRunner(request, this.nextPlan ?? this.defaultPlan);
    this.nextPlan = undefined;
    this.live.set(runner.runnerId, runner);
    void runner.closed.then(() => this.live.delete(runner.runnerId));
    this.unclaimed.push(runner);
    this.provisioned.emit("runner");
    return { runnerId: request.runnerId, providerId: `fake-${++this.count}` };
  }

  async terminate(runner: ProvisionedRunner): Promise<void> {
    const fake = this.live.get(runner.runnerId);
    if (!fake) return;
    fake.socket.terminate();
    await fake.closed;
  }

  async list(filter: { pool?: string } = {}): Promise<ListedRunner[]> {
    if (filter.pool !== undefined && filter.pool !== TARGET_POOL) return [];
    return [...this.live.keys()].map((runnerId) => ({ runnerId, providerId: runnerId, pool: TARGET_POOL, parentId: "", state: "running" }));
  }

  /** The next runner the pool provisions (oldest not yet claimed first). */
  async nextRunner(): Promise<FakeRunner> {
    if (this.unclaimed.length === 0) await new Promise((resolve) => this.provisioned.once("runner", resolve));
    return this.unclaimed.shift()!;
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.live.values()].map((runner) => this.terminate({ runnerId: runner.runnerId, providerId: "" })));
  }
}

// ---- the pools under test ----------------------------------------------------------

const TARGET_POOL = "session-fuzz-target";

interface LogLine {
  level: keyof Logger;
  message: string;
}

function recordingLogger(lines: LogLine[]): Logger {
  const record = (level: keyof Logger) => (_fields: Record<string, unknown>, message: string) => void lines.push({ level, message });
  return { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") };
}

/** Fails with `what` if `promise` has not settled within STEP_TIMEOUT: a watchdog, so a broken case fails instead of hanging. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${STEP_TIMEOUT} ms waiting for ${what}`)), STEP_TIMEOUT);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

const backend = new FakeRunnerBackend();
const targetLog: LogLine[] = [];
const bootFailures: Error[] = [];
const shrinks = new EventEmitter();
const target = makePool({
  name: TARGET_POOL,
  max: 1,
  backend,
  bootTimeout: 3_000,
  timeout: 10_000,
  log: recordingLogger(targetLog),
  onGrowEnd: (result) => {
    if (!result.ok) bootFailures.push(result.error);
  },
  onShrink: (info) => void shrinks.emit(info.runnerId),
});
const bystander = makePool({ name: "session-fuzz-bystander", max: 1, backend: testProcessBackend() });

const uncaught: unknown[] = [];
const recordUncaught = (error: unknown) => void uncaught.push(error);

beforeAll(async () => {
  process.on("uncaughtException", recordUncaught);
  process.on("unhandledRejection", recordUncaught);
  // Boots the real runner once, before any attack.
  await expect(bystander.add(1, 1)).resolves.toBe(2);
});

afterAll(async () => {
  await Promise.all([target.pool.stop(), bystander.pool.stop()]);
  await backend.closeAll();
  process.off("uncaughtException", recordUncaught);
  process.off("unhandledRejection", recordUncaught);
});

/** Bounded runs report the first failing case as generated; explicit runs (FLAME_FUZZ_RUNS) also shrink it. */
function fuzzParameters(numRuns: number): fc.Parameters<[Attack]> {
  return { seed: SEED, numRuns: RUNS ?? numRuns, examples: NAMED_ATTACKS.map((named) => [named]), endOnFailure: RUNS === undefined };
}

/** Room for every case to take its longest step, when FLAME_FUZZ_RUNS asks for many. */
function timeoutFor(numRuns: number): number {
  return 30_000 + (RUNS ?? numRuns) * 300;
}

/** Ends `runner` whatever happened, so the next case (or a shrink) starts with an empty pool. */
async function discard(runner: FakeRunner | undefined): Promise<void> {
  if (!runner) return;
  runner.socket.terminate();
  await runner.closed;
}

describe("a runner that breaks the protocol loses its connection, nothing else", () => {
  it("after its welcome: its call fails with RunnerExitedError, other pools are unaffected", async () => {
    backend.defaultPlan = { answerCalls: false };
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(afterWelcomeAttack, async (hostile) => {
        cases += 1;
        const call = target.echo(`case ${cases}`);
        call.catch(() => undefined);
        let runner: FakeRunner | undefined;
        try {
          runner = await within(backend.nextRunner(), "the pool to provision a fake runner");
          await within(runner.firstCall(), "the call to reach the fake runner");
          expect(runner.welcomed).toBe(true);
          const bystanderCall = bystander.add(cases, 1);
          const errorsBefore = targetLog.filter((line) => line.level === "error").length;

          runner.attack(hostile);

          const failure = await within(call.then(() => undefined, (error: unknown) => error), "the call on the attacked runner to settle");
          expect(failure).toBeInstanceOf(RunnerExitedError);
          expect((failure as RunnerExitedError).runnerId).toBe(runner.runnerId);
          await within(runner.closed, "the parent to close the attacked runner's connection");
          await expect(within(bystanderCall, "the bystander's call")).resolves.toBe(cases + 1);
          if (hostile.kind !== "raw") {
            // A frame that reached the protocol layer is logged as an error naming the runner.
            const errors = targetLog.filter((line) => line.level === "error").slice(errorsBefore);
            expect(errors.some((line) => line.message.includes(runner!.runnerId))).toBe(true);
          }
          expect(runner.invalidFromParent).toEqual([]);
          expect(uncaught).toEqual([]);
        } finally {
          await discard(runner);
        }
      }),
      fuzzParameters(40),
    );
  }, timeoutFor(40));

  it("before its hello: the boot fails with a retryable BootError, a later boot serves the call", async () => {
    backend.defaultPlan = { answerCalls: true };
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(openingAttack, async (hostile) => {
        cases += 1;
        const failuresBefore = bootFailures.length;
        backend.nextPlan = { opening: hostile, answerCalls: false };
        const call = target.echo(`case ${cases}`);
        call.catch(() => undefined);
        let attacker: FakeRunner | undefined;
        let replacement: FakeRunner | undefined;
        try {
          attacker = await within(backend.nextRunner(), "the pool to provision the attacking runner");
          await within(attacker.closed, "the parent to close the attacking runner's connection");
          expect(attacker.welcomed).toBe(false);
          replacement = await within(backend.nextRunner(), "the pool to boot again");
          await expect(within(call, "the call to be served by the next runner")).resolves.toBe(`case ${cases}`);

          const failures = bootFailures.slice(failuresBefore);
          expect(failures).toHaveLength(1);
          expect(failures[0]).toBeInstanceOf(BootError);
          expect(failures[0]).not.toBeInstanceOf(VersionMismatchError);
          expect((failures[0] as BootError).retryable).toBe(true);
          expect(failures[0]!.message).toContain(attacker.runnerId);
          expect(replacement.invalidFromParent).toEqual([]);
          expect(uncaught).toEqual([]);

          // The replacement leaves, so the next case boots afresh.
          const gone = new Promise((resolve) => shrinks.once(replacement!.runnerId, resolve));
          replacement.socket.close();
          await within(gone, "the pool to see the replacement leave");
        } finally {
          await discard(attacker);
          await discard(replacement);
        }
      }),
      fuzzParameters(20),
    );
  }, timeoutFor(20));

  it("between its hello and its welcome: the parent closes it (no frame slips through unread)", async () => {
    backend.defaultPlan = { answerCalls: true };
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(afterWelcomeAttack, async (hostile) => {
        cases += 1;
        backend.nextPlan = { behindHello: hostile, answerCalls: false };
        const call = target.echo(`case ${cases}`);
        call.catch(() => undefined);
        let attacker: FakeRunner | undefined;
        let replacement: FakeRunner | undefined;
        try {
          attacker = await within(backend.nextRunner(), "the pool to provision the attacking runner");
          await within(attacker.closed, "the parent to close the attacking runner's connection");
          // Caught during the boot (the boot fails and is retried) or right after it (the call on it fails): either is sound.
          const outcome = await within(call.then((value) => ({ value }), (error: unknown) => ({ error })), "the call to settle");
          if ("error" in outcome) {
            expect(outcome.error).toBeInstanceOf(RunnerExitedError);
            expect((outcome.error as RunnerExitedError).runnerId).toBe(attacker.runnerId);
          } else {
            expect(outcome.value).toBe(`case ${cases}`);
            replacement = await within(backend.nextRunner(), "the runner that served the call");
            const gone = new Promise((resolve) => shrinks.once(replacement!.runnerId, resolve));
            replacement.socket.close();
            await within(gone, "the pool to see the replacement leave");
          }
          expect(uncaught).toEqual([]);
        } finally {
          await discard(attacker);
          await discard(replacement);
        }
      }),
      fuzzParameters(20),
    );
  }, timeoutFor(20));
});
