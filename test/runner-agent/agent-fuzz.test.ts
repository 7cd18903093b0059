/**
 * The runner under attack by its parent. The parent is a fake here: a
 * WebSocketServer in the test that accepts the agent, reads its hello and
 * then sends whatever it likes.
 *
 * Fast layer: an Agent in this process (as LocalBackend runs it) gets a
 * generated session of frames, valid and not, before and after its welcome.
 * A model of the session (the codec decides what each frame is; codec.test.ts
 * checks the codec) says how the agent must end and which calls it may run.
 * Process layer: the real agent process against the fake parent, for its exit
 * codes, what it prints, and how quickly it goes.
 *
 * Property-based with fast-check. The seed is fixed so a failure reproduces;
 * FLAME_FUZZ_SEED picks another, FLAME_FUZZ_RUNS sets the cases per property.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter, once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { serialize } from "node:v8";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import type { Backend } from "../../src/backends/backend.js";
import { decodeParentMessage, decodeRunnerMessage, encodeMessage, framesOf, type DecodedParentMessage } from "../../src/protocol/codec.js";
import { RUNNER_ID_HEADER, type ParentMessage, type RunnerMessage } from "../../src/protocol/messages.js";
import { encodeRunnerEnv } from "../../src/protocol/runner-env.js";
import { ProtocolError } from "../../src/protocol/validate.js";
import { Agent, type AgentEnd } from "../../src/runner-agent/agent.js";
import { InlineCalls } from "../../src/runner-agent/call-host.js";
import type { RegisteredPool } from "../../src/runtime.js";
import { MIRROR_EXEC_ARGV } from "../support/backends.js";
import { keepProcessesAcrossTests } from "../support/no-leftover-processes.js";

// The agents the process-layer tests attack are started together before those tests (each
// spends most of its life starting up); leftovers are checked once the file is done.
keepProcessesAcrossTests();

const SEED = Number(process.env.FLAME_FUZZ_SEED ?? 20_261_204);
const RUNS = process.env.FLAME_FUZZ_RUNS ? Number(process.env.FLAME_FUZZ_RUNS) : undefined;
/** Longest wait for any one step; every step ends on an event long before. */
const STEP_TIMEOUT = 5_000;
/** How soon the agent must end after the frame that ends it. */
const PROMPTLY = 1_000;

/** Fails with `what` if `promise` has not settled within STEP_TIMEOUT: a watchdog, so a broken case fails instead of hanging. */
async function within<T>(promise: Promise<T>, what: string, timeout = STEP_TIMEOUT): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms waiting for ${what}`)), timeout);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

// ---- the fake parent -----------------------------------------------------------------

/** One agent's connection, seen from the fake parent. */
class Session {
  readonly received: RunnerMessage[] = [];
  /** Frames from the agent that did not decode: an agent must only ever send valid ones. */
  readonly invalid: string[] = [];
  readonly closed: Promise<number>;
  private readonly arrivals = new EventEmitter();

  constructor(readonly socket: WebSocket) {
    socket.on("error", () => undefined);
    this.closed = new Promise((resolve) => socket.once("close", (code: number) => resolve(code)));
    socket.on("message", (data: Buffer, isBinary: boolean) => {
      try {
        if (!isBinary) throw new ProtocolError("a frame is not binary");
        for (const frame of framesOf(data)) this.received.push(decodeRunnerMessage(frame));
      } catch (error) {
        this.invalid.push((error as Error).message);
      }
      this.arrivals.emit("message");
    });
  }

  /** Resolves once `predicate` holds of what the agent has sent. */
  async until(predicate: (received: RunnerMessage[]) => boolean): Promise<void> {
    while (!predicate(this.received)) await once(this.arrivals, "message");
  }

  send(message: ParentMessage): void {
    this.socket.send(encodeMessage(message));
  }

  /** Bytes under ws, straight onto the TCP socket: frames WebSocket itself forbids. */
  writeRaw(bytes: Buffer): void {
    (this.socket as unknown as { _socket: { write(bytes: Buffer): void } })._socket.write(bytes);
  }
}

/** Accepts every agent that dials it, whatever its token. */
class FakeParent {
  private readonly sessions = new Map<string, Session>();
  private readonly connected = new EventEmitter();

  private constructor(private readonly server: WebSocketServer) {
    server.on("connection", (socket, request) => {
      const runnerId = String(request.headers[RUNNER_ID_HEADER]);
      this.sessions.set(runnerId, new Session(socket));
      this.connected.emit(runnerId);
    });
  }

  static async start(): Promise<FakeParent> {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
    await once(server, "listening");
    return new FakeParent(server);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The connection of the agent booted as `runnerId`, once it has connected. */
  async sessionOf(runnerId: string): Promise<Session> {
    if (!this.sessions.has(runnerId)) await once(this.connected, runnerId);
    return this.sessions.get(runnerId)!;
  }

  async close(): Promise<void> {
    for (const client of this.server.clients) client.terminate();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

// ---- what a parent can send ------------------------------------------------------------

type Step =
  | { kind: "welcome" }
  | { kind: "refuse"; reason: string }
  | { kind: "call"; functionId: "record" | "missing"; args: unknown[] }
  /** A call whose arguments are nested deeper than V8 decodes: it fails with a serialization error, unrun. */
  | { kind: "deep-call" }
  | { kind: "cancel"; reason: "timeout" | "aborted" | "stopped" }
  | { kind: "idle-check" }
  | { kind: "shutdown"; reason: string }
  /** Bytes the codec decides about: random, truncated, mutated, wrongly typed, of unknown type. */
  | { kind: "frame"; frame: Buffer }
  | { kind: "text"; text: string }
  | { kind: "raw"; bytes: Buffer };

/** A step as it goes on the wire. Ids are given in order, so no two calls of a session share one. */
type Wire = { kind: "binary"; frame: Buffer } | { kind: "text"; text: string } | { kind: "raw"; bytes: Buffer };

function nested(depth: number): unknown {
  let value: unknown = "bottom";
  for (let level = 0; level < depth; level += 1) value = { next: value };
  return value;
}

function toWire(step: Step, id: number): Wire {
  const binary = (message: ParentMessage): Wire => ({ kind: "binary", frame: encodeMessage(message) });
  switch (step.kind) {
    case "welcome":
      return binary({ type: "welcome" });
    case "refuse":
      return binary({ type: "refuse", reason: step.reason });
    case "call":
      return binary({ type: "call", callId: id, functionId: step.functionId, args: step.args });
    case "deep-call":
      return binary({ type: "call", callId: id, functionId: "record", args: [nested(3_000)] });
    case "cancel":
      return binary({ type: "cancel", callId: id - 1, reason: step.reason });
    case "idle-check":
      return binary({ type: "idle-check", checkId: id });
    case "shutdown":
      return binary({ type: "shutdown", reason: step.reason });
    case "frame":
      return { kind: "binary", frame: step.frame };
    case "text":
      return { kind: "text", text: step.text };
    case "raw":
      return { kind: "raw", bytes: step.bytes };
  }
}

function wiresOf(steps: Step[]): Wire[] {
  return steps.map((step, index) => toWire(step, 1_000 + index));
}

function transmit(session: Session, wires: Wire[]): void {
  for (const wire of wires) {
    if (wire.kind === "binary") session.socket.send(wire.frame, { binary: true });
    else if (wire.kind === "text") session.socket.send(wire.text, { binary: false });
    else session.writeRaw(wire.bytes);
  }
}

const userValue = fc.anything({ maxDepth: 2, maxKeys: 3, withBigInt: true, withDate: true, withMap: true, withSet: true, withTypedArray: true });
const id = fc.maxSafeNat();
const validParentMessage: fc.Arbitrary<ParentMessage> = fc.oneof(
  fc.constant({ type: "welcome" as const }),
  fc.record({ type: fc.constant("refuse" as const), reason: fc.string() }),
  fc.record({ type: fc.constant("call" as const), callId: id, functionId: fc.constantFrom("record", "missing"), args: fc.array(userValue, { maxLength: 2 }) }),
  fc.record({ type: fc.constant("cancel" as const), callId: id, reason: fc.constantFrom("timeout" as const, "aborted" as const, "stopped" as const) }),
  fc.record({ type: fc.constant("idle-check" as const), checkId: id }),
  fc.record({ type: fc.constant("shutdown" as const), reason: fc.string() }),
);
const validFrame = validParentMessage.map((message) => encodeMessage(message));

/** A CONTROL frame holding any value as its message (encodeMessage picks the layout by `type`, which may be anything here). */
function controlFrame(value: unknown): Buffer {
  return Buffer.concat([Buffer.of(0), serialize(value)]);
}

const hostileFrame: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 48 }).map((bytes) => Buffer.from(bytes)),
  fc.tuple(validFrame, fc.nat()).map(([frame, cut]) => frame.subarray(0, cut % frame.byteLength)),
  fc.tuple(validFrame, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([frame, position, byte]) => {
    const mutated = Buffer.from(frame);
    mutated[position % mutated.byteLength] = byte;
    return mutated;
  }),
  fc
    .tuple(validParentMessage.filter((message) => message.type !== "call"), fc.nat(), userValue)
    .map(([message, pick, value]) => {
      const keys = Object.keys(message);
      return controlFrame({ ...message, [keys[pick % keys.length]!]: value });
    }),
  fc
    .tuple(fc.oneof(fc.integer({ max: -1 }), fc.constantFrom(0.5, Number.NaN, 2 ** 53)), userValue, userValue)
    .map(([callId, functionId, args]) => encodeMessage({ type: "call", callId, functionId, args } as ParentMessage)),
  fc.string().map((type) => controlFrame({ type, reason: "r" })),
  fc.constantFrom(null, undefined, 0, "welcome", [{ type: "welcome" }]).map((value) => controlFrame(value)),
);

/** Frames ws must refuse from a server (RFC 6455 section 5). */
const invalidWebSocketFrame = fc.oneof(
  fc.constantFrom(3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf).map((opcode) => Buffer.of(0x80 | opcode, 0x00)),
  fc.tuple(fc.constantFrom(0x40, 0x20, 0x10), fc.constantFrom(1, 2)).map(([reserved, opcode]) => Buffer.of(0x80 | reserved | opcode, 0x00)),
  // Masked: a server's frames never are.
  fc.constantFrom(1, 2, 9).map((opcode) => Buffer.of(0x80 | opcode, 0x80, 0, 0, 0, 0)),
  fc.constant(Buffer.of(0x80, 0x00)),
  fc.constantFrom(8, 9, 10).map((opcode) => Buffer.of(opcode, 0x00)),
  fc.constant(Buffer.concat([Buffer.of(0x89, 126, 0, 200), Buffer.alloc(200)])),
  fc.constantFrom(2n ** 28n + 1n, 2n ** 63n).map((length) => {
    const frame = Buffer.alloc(10);
    frame[0] = 0x82;
    frame[1] = 127;
    frame.writeBigUInt64BE(length, 2);
    return frame;
  }),
  fc.constantFrom([0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80]).map((text) => Buffer.concat([Buffer.of(0x81, text.length), Buffer.from(text)])),
  fc.constantFrom(999, 1005, 1006, 2000, 5000).map((code) => Buffer.of(0x88, 2, code >> 8, code & 0xff)),
);

const callStep = fc.record({
  kind: fc.constant("call" as const),
  functionId: fc.constantFrom("record" as const, "record" as const, "missing" as const),
  args: fc.array(userValue, { maxLength: 3 }),
});
/** What a well-behaved parent sends a welcomed runner, the session's end (shutdown) aside. */
const servingStep: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: callStep },
  { weight: 1, arbitrary: fc.constant<Step>({ kind: "deep-call" }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("cancel" as const), reason: fc.constantFrom("timeout" as const, "aborted" as const, "stopped" as const) }) },
  { weight: 2, arbitrary: fc.constant<Step>({ kind: "idle-check" }) },
);
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Step>({ kind: "welcome" }) },
  { weight: 6, arbitrary: servingStep },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("shutdown" as const), reason: fc.string() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("refuse" as const), reason: fc.string() }) },
  { weight: 3, arbitrary: hostileFrame.map((frame): Step => ({ kind: "frame", frame })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }).map((text): Step => ({ kind: "text", text })) },
  { weight: 1, arbitrary: invalidWebSocketFrame.map((bytes): Step => ({ kind: "raw", bytes })) },
);

/**
 * A session: usually a welcome and some calls, then perhaps something that
 * ends it, then anything at all (which must not run once the session has ended).
 */
const sessionSteps = fc
  .tuple(
    fc.oneof({ weight: 3, arbitrary: fc.constant<Step[]>([{ kind: "welcome" }]) }, { weight: 1, arbitrary: fc.constant<Step[]>([]) }),
    fc.array(servingStep, { maxLength: 5 }),
    fc.option(step, { freq: 4, nil: undefined }),
    fc.array(step, { maxLength: 4 }),
  )
  .map(([opening, serving, ending, tail]) => [...opening, ...serving, ...(ending ? [ending] : []), ...tail]);

// ---- the model -----------------------------------------------------------------------------

type Reply = { callId: number; ok: true; value: unknown } | { callId: number; ok: false; kind: "serialization" | "unknown-function" } | { checkId: number };

interface Expected {
  /** How the agent ends; "serving" when nothing in the session ends it. */
  end: AgentEnd["reason"] | "serving";
  /** Whether the session got as far as its welcome. */
  welcomed: boolean;
  /** Arguments of the calls the agent runs, in order. */
  invoked: unknown[][];
  /** What the agent answers (checked only when it is still serving: an ending cuts answers short). */
  replies: Reply[];
  /** Two runs of one call id could overlap (decided by how frames fall into reads): the case is not deterministic. */
  ambiguous: boolean;
}

function decodeOrInvalid(frame: Buffer): DecodedParentMessage | "invalid" {
  try {
    return decodeParentMessage(frame);
  } catch (error) {
    if (error instanceof ProtocolError) return "invalid";
    throw error;
  }
}

/** What the agent must do with `wires`, from its hello on: nothing the parent sends after the end may run. */
function expectedSession(wires: Wire[]): Expected {
  const expected: Expected = { end: "serving", welcomed: false, invoked: [], replies: [], ambiguous: false };
  const callIds = new Set<number>();
  const finish = (end: AgentEnd["reason"]) => (expected.end = end);
  for (const wire of wires) {
    if (expected.end !== "serving") break;
    const message = wire.kind === "binary" ? decodeOrInvalid(wire.frame) : "invalid";
    if (message === "invalid") finish("protocol-error");
    else if (message.type === "refuse") finish("refused");
    else if (message.type === "welcome") {
      if (expected.welcomed) finish("protocol-error");
      expected.welcomed = true;
    } else if (!expected.welcomed) finish("protocol-error");
    else if (message.type === "shutdown") finish("shutdown");
    else if (message.type === "idle-check") expected.replies.push({ checkId: message.checkId });
    else if (message.type === "call") {
      if (message.argsError !== undefined) expected.replies.push({ callId: message.callId, ok: false, kind: "serialization" });
      else if (message.functionId !== "record") expected.replies.push({ callId: message.callId, ok: false, kind: "unknown-function" });
      else {
        if (callIds.has(message.callId)) expected.ambiguous = true;
        callIds.add(message.callId);
        expected.invoked.push(message.args);
        expected.replies.push({ callId: message.callId, ok: true, value: message.args[0] });
      }
    }
  }
  return expected;
}

function hasReply(received: RunnerMessage[], reply: Reply): boolean {
  if ("checkId" in reply) return received.some((message) => message.type === "idle-check-reply" && message.checkId === reply.checkId);
  return received.some((message) => message.type === "result" && message.callId === reply.callId);
}

function expectReply(received: RunnerMessage[], reply: Reply): void {
  if ("checkId" in reply) {
    expect(received).toContainEqual({ type: "idle-check-reply", checkId: reply.checkId, shutdown: true });
    return;
  }
  const result = received.find((message) => message.type === "result" && message.callId === reply.callId);
  if (reply.ok) {
    expect(result).toMatchObject({ ok: true });
    expect(isDeepStrictEqual(result?.type === "result" && result.ok ? result.value : Symbol("no value"), reply.value), "the result is the call's first argument").toBe(true);
  } else {
    expect(result).toMatchObject({ ok: false, error: { kind: reply.kind } });
  }
}

// ---- the agent under test ----------------------------------------------------------------

const POOL = "agent-fuzz";
const inertBackend: Backend = {
  name: "inert",
  provision: () => Promise.reject(new Error("this backend starts nothing")),
  terminate: async () => undefined,
  list: async () => [],
};

/** An Agent built as LocalBackend builds one, serving a pool whose one function records its calls. */
function startAgent(parent: FakeParent, runnerId: string): { agent: Agent; invocations: unknown[][] } {
  const invocations: unknown[][] = [];
  const pool: RegisteredPool = {
    name: POOL,
    backend: inertBackend,
    lookupFunction: (functionId) =>
      functionId === "record"
        ? (...args: unknown[]) => {
            invocations.push(args);
            return args[0];
          }
        : undefined,
    runIdleCheck: async () => true,
  };
  const agent = new Agent({
    boot: { parentUrl: parent.url, runnerId, pool: POOL, token: "any", connectTimeout: 2_000, heartbeatInterval: 60_000 },
    appVersion: "agent-fuzz",
    calls: new InlineCalls({ runnerId, pool: POOL, findPool: () => pool }),
    report: () => undefined,
  });
  return { agent, invocations };
}

function fuzzParameters<T>(numRuns: number, examples: T[] = []): fc.Parameters<[T]> {
  return { seed: SEED, numRuns: RUNS ?? numRuns, examples: examples.map((example) => [example]), endOnFailure: RUNS === undefined };
}

function timeoutFor(numRuns: number): number {
  return 30_000 + (RUNS ?? numRuns) * 200;
}

/** A fake parent for the tests of one describe block, so no block claims another's connections. */
function fakeParentForBlock(): () => FakeParent {
  let parent: FakeParent | undefined;
  beforeAll(async () => {
    parent = await FakeParent.start();
  });
  afterAll(async () => {
    await parent?.close();
  });
  return () => parent!;
}

/** Connects a fresh agent and reads its hello; returns everything a case needs. */
async function helloReceived(parent: FakeParent, runnerId: string) {
  const { agent, invocations } = startAgent(parent, runnerId);
  await within(agent.connect(), "the agent to connect");
  const session = await within(parent.sessionOf(runnerId), "the fake parent to accept the agent");
  void agent.serve();
  await within(session.until((received) => received.length > 0), "the agent's hello");
  expect(session.received[0]).toMatchObject({ type: "hello", runnerId, poolDefined: true });
  return { agent, invocations, session };
}

/** Sends `steps` after the hello; checks the agent against the model and returns what it saw. */
async function runSession(parent: FakeParent, steps: Step[], runnerId: string): Promise<{ end: AgentEnd; invocations: unknown[][] }> {
  const wires = wiresOf(steps);
  const expected = expectedSession(wires);
  fc.pre(!expected.ambiguous);
  const { agent, invocations, session } = await helloReceived(parent, runnerId);
  try {
    transmit(session, wires);
    if (expected.end === "serving") {
      await within(session.until((received) => expected.replies.every((reply) => hasReply(received, reply))), "the agent to answer every call and idle check");
      for (const reply of expected.replies) expectReply(session.received, reply);
      if (!expected.welcomed) session.send({ type: "welcome" });
      session.send({ type: "shutdown", reason: "end of the case" });
    }
    const sentAt = Date.now();
    const end = await within(agent.done, "the agent to end");
    expect(Date.now() - sentAt, "the agent ended promptly").toBeLessThan(PROMPTLY);
    expect(end.reason).toBe(expected.end === "serving" ? "shutdown" : expected.end);
    await within(session.closed, "the agent's connection to close");
    expect(invocations, "the calls the agent ran").toEqual(expected.invoked);
    expect(session.invalid, "frames the agent sent that do not decode").toEqual([]);
    return { end, invocations };
  } finally {
    agent.close("the case is over");
    session.socket.terminate();
  }
}

const call = (...args: unknown[]): Step => ({ kind: "call", functionId: "record", args });
const NULL_FRAME: Step = { kind: "frame", frame: controlFrame(null) };

describe("an in-process agent against a hostile parent", () => {
  const parent = fakeParentForBlock();

  it("ends as the session model says, running only the calls a welcomed session sent", async () => {
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(sessionSteps, async (steps) => {
        cases += 1;
        await runSession(parent(), steps, `fuzz-${cases}`);
      }),
      fuzzParameters(80, [[{ kind: "welcome" }, call("a"), { kind: "idle-check" }, { kind: "cancel", reason: "aborted" }, { kind: "deep-call" }]] as Step[][]),
    );
  }, timeoutFor(80));

  it("ends with protocol-error on any frame before its hello, and never says hello", async () => {
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(step, async (first) => {
        cases += 1;
        const runnerId = `early-${cases}`;
        const { agent, invocations } = startAgent(parent(), runnerId);
        await within(agent.connect(), "the agent to connect");
        const session = await within(parent().sessionOf(runnerId), "the fake parent to accept the agent");
        try {
          transmit(session, wiresOf([first, { kind: "welcome" }, call("after the welcome")]));
          const end = await within(agent.done, "the agent to end");
          expect(end.reason).toBe("protocol-error");
          await within(session.closed, "the agent's connection to close");
          await agent.serve();
          expect(session.received, "what the agent sent").toEqual([]);
          expect(invocations).toEqual([]);
        } finally {
          agent.close("the case is over");
          session.socket.terminate();
        }
      }),
      fuzzParameters(30, [{ kind: "welcome" } as Step, call("x"), NULL_FRAME]),
    );
  }, timeoutFor(30));

  // Once ended, an agent must stay ended: frames already on their way (ws still delivers
  // them while its close handshake runs) must not revive it.
  it.each([
    ["a call before the welcome", [call("before"), { kind: "welcome" }, call("after")]],
    ["an invalid frame", [{ kind: "welcome" }, NULL_FRAME, { kind: "welcome" }, call("after")]],
    ["a second welcome", [{ kind: "welcome" }, { kind: "welcome" }, { kind: "welcome" }, call("after")]],
    ["a shutdown", [{ kind: "welcome" }, { kind: "shutdown", reason: "done" }, { kind: "welcome" }, call("after")]],
    ["a refusal", [{ kind: "refuse", reason: "no" }, { kind: "welcome" }, call("after")]],
  ] as [string, Step[]][])("stays ended after %s, whatever follows", async (what, steps) => {
    const { invocations } = await runSession(parent(), steps, `ended-${what.replace(/\W+/g, "-")}`);
    expect(invocations).toEqual([]);
  });
});

// ---- the agent process -----------------------------------------------------------------------

const agentMain = fileURLToPath(new URL("../../src/runner-agent/main.ts", import.meta.url));
const appEntry = fileURLToPath(new URL("../fixtures/app.ts", import.meta.url));

interface AgentProcess {
  child: ChildProcess;
  /** Settles when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  stderr(): string;
}

const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

/** Starts the real runner agent (from the suite's JavaScript copy, as the ProcessBackend of the tests does) pointed at `parentUrl`. */
function spawnAgent(parentUrl: string, options: { runnerId?: string; entry?: string; connectTimeout?: number } = {}): AgentProcess {
  const env = encodeRunnerEnv({
    parentUrl,
    runnerId: options.runnerId ?? "hostile-parent-test",
    pool: POOL,
    token: "any",
    connectTimeout: options.connectTimeout ?? 10_000,
    heartbeatInterval: 10_000,
  });
  const child = spawn(process.execPath, [...MIRROR_EXEC_ARGV, agentMain, ...(options.entry ? [options.entry] : [])], {
    env: { ...process.env, FLAME_PARENT: env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.push(child);
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    // 'close', not 'exit': by then stderr has been read to its end.
    child.once("close", (code, signal) => resolve({ code, signal, at: Date.now() }));
  });
  return { child, exited, stderr: () => stderr };
}

/** One line on stderr, tagged, without a stack trace: what an operator reads in a machine's log. */
function expectOneReport(stderr: string, pattern: RegExp): void {
  const reports = stderr.split("\n").filter((line) => line.startsWith("[flame runner]"));
  expect(reports, `stderr was:\n${stderr}`).toHaveLength(1);
  expect(reports[0]).toMatch(pattern);
  expect(stderr, "a stack trace on stderr").not.toMatch(/\n\s+at /);
}

/** Waits for the hello of the agent started as `runnerId`, applies `attack` (before any welcome), and returns how the process ended. */
async function attackAfterHello(parent: FakeParent, agent: AgentProcess, runnerId: string, attack: (session: Session) => void) {
  const session = await within(parent.sessionOf(runnerId), "the agent process to connect", 10_000);
  await within(session.until((received) => received.length > 0), "the agent's hello", 10_000);
  expect(session.received[0]).toMatchObject({ type: "hello", runnerId });
  const attackedAt = Date.now();
  attack(session);
  const exit = await within(agent.exited, "the agent process to exit");
  expect(exit.at - attackedAt, "the agent exited within a couple of seconds").toBeLessThan(2_000);
  return { ...exit, hello: session.received[0], stderr: agent.stderr() };
}

/** A plain HTTP server that answers every upgrade with `status` (after `delay` ms). */
async function refusingParent(status: string, delay: () => number = () => 0): Promise<Server & { url: string }> {
  const server = createServer();
  server.on("upgrade", (_request, socket) => {
    socket.on("error", () => undefined);
    const answer = () => socket.end(`HTTP/1.1 ${status}\r\n\r\n`);
    const wait = delay();
    if (wait > 0) setTimeout(answer, wait);
    else answer();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return Object.assign(server, { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}` });
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

describe("the agent process against a hostile parent", () => {
  const parent = fakeParentForBlock();
  /** Runner ids of the agents attacked once they said hello, and the entry each loads. */
  const attacked: Record<string, string | undefined> = {
    "null-frame": undefined,
    "invalid-opcode": undefined,
    // The fixture app defines "crash" on the runner's pool.
    "call-before-welcome": appEntry,
    refused: undefined,
  };
  const agents = new Map<string, AgentProcess>();
  beforeAll(() => {
    for (const [runnerId, entry] of Object.entries(attacked)) agents.set(runnerId, spawnAgent(parent().url, { runnerId, entry }));
  });
  const attack = (runnerId: string, how: (session: Session) => void) => attackAfterHello(parent(), agents.get(runnerId)!, runnerId, how);

  it("exits 6 on a null frame", async () => {
    const exit = await attack("null-frame", (session) => session.socket.send(controlFrame(null)));
    expect(exit.code).toBe(6);
    expectOneReport(exit.stderr, /invalid frame: .*not an object.*; exiting$/);
  });

  it("exits 6 on an invalid WebSocket opcode", async () => {
    const exit = await attack("invalid-opcode", (session) => session.writeRaw(Buffer.of(0x83, 0x00)));
    expect(exit.code).toBe(6);
    expectOneReport(exit.stderr, /invalid opcode 3; exiting$/);
  });

  it("exits 6 on a call before its welcome, running neither it nor a call that a later welcome seems to allow", async () => {
    // "crash" kills the runner with SIGKILL: had either call run, there would be no exit code at all.
    const exit = await attack("call-before-welcome", (session) => {
      session.send({ type: "call", callId: 1, functionId: "crash", args: [] });
      session.send({ type: "welcome" });
      session.send({ type: "call", callId: 2, functionId: "crash", args: [] });
    });
    expect(exit.hello, "the runner has the function").toMatchObject({ poolDefined: true });
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 6, signal: null });
    expectOneReport(exit.stderr, /sent "call" before welcoming this runner; exiting$/);
  });

  it("exits 3 when refused", async () => {
    const exit = await attack("refused", (session) => session.send({ type: "refuse", reason: "runs app version 0.0.0, the parent runs 9.9.9" }));
    expect(exit.code).toBe(3);
    expectOneReport(exit.stderr, /the parent refused this runner: runs app version 0\.0\.0, the parent runs 9\.9\.9; exiting$/);
  });

  it("exits 4 when the upgrade is answered 401", async () => {
    const server = await refusingParent("401 Unauthorized");
    try {
      const startedAt = Date.now();
      const agent = spawnAgent(server.url);
      const exit = await within(agent.exited, "the agent process to exit", 10_000);
      expect(exit.code).toBe(4);
      expect(exit.at - startedAt).toBeLessThan(5_000);
      expectOneReport(agent.stderr(), /refused this runner's token \(HTTP 401\); exiting$/);
    } finally {
      await closeServer(server);
    }
  });

  it("exits 5 when every upgrade is answered 503 until its connect timeout", async () => {
    // 700 ms: its retries (50, 100, 200 ms apart, then 400 would overshoot) give up at ~350 ms, far from its failsafe timer.
    const connectTimeout = 700;
    const server = await refusingParent("503 Service Unavailable");
    try {
      const agent = spawnAgent(server.url, { connectTimeout });
      const exit = await within(agent.exited, "the agent process to exit", 10_000);
      // Its own verdict on the 503s (exit 5 and that line), not its failsafe's: no wall-clock margin,
      // which a loaded machine stretches (a tsx start alone took 4 s once).
      expect(exit.code).toBe(5);
      expectOneReport(agent.stderr(), /could not reach the parent .* HTTP 503; exiting$/);
    } finally {
      await closeServer(server);
    }
  });

  it("exits 5 with one line when a 503 arrives just before its failsafe fires", async () => {
    // The agent gives up on that answer and reports it; its failsafe timer (connectTimeout after
    // start) then fires within the 20 ms the agent waits before exiting, and must not report again.
    // This server can only reckon the deadline from when the request arrived, which trails the
    // agent's start by the time its first connection takes (5 to 40 ms, more under load), so
    // agents in turn get answers 15, 30 and 45 ms before that reckoned deadline: one of them lands
    // in the window on most runs. A fixed agent reports once whenever its answer comes.
    const connectTimeout = 300;
    for (const early of [15, 30, 45]) {
      const server = await refusingParent("503 Service Unavailable", () => connectTimeout - early);
      try {
        const agent = spawnAgent(server.url, { connectTimeout });
        const exit = await within(agent.exited, "the agent process to exit", 10_000);
        expect(exit.code).toBe(5);
        expectOneReport(agent.stderr(), /(could not reach|not connected to) the parent/);
      } finally {
        await closeServer(server);
      }
    }
  });
});
