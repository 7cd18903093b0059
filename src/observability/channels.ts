/**
 * flame-ts' diagnostics_channel names and what each carries, for APMs and
 * tools that subscribe without OpenTelemetry (docs/observability.md lists
 * them). Payloads are plain objects, built only when someone subscribes:
 * with no subscriber, publishing costs a property read.
 */
import diagnosticsChannel from "node:diagnostics_channel";

/** The context object of the `flame-ts:call` TracingChannel; Node adds `result` or `error` to it. */
export interface CallChannelContext {
  pool: string;
  functionId: string;
  /** How many arguments the call has (never the arguments themselves). */
  argsLength: number;
  /** A placed child (placeChild) rather than a call. */
  child: boolean;
  /** The runner the call went to, set once it is placed (by asyncStart, if it was placed at all). */
  runnerId?: string;
  result?: unknown;
  error?: unknown;
}

/** `flame-ts:runner:boot:start`: the pool starts booting a runner. */
export interface BootStartMessage {
  pool: string;
  runnerId: string;
  backend: string;
}

/** `flame-ts:runner:boot:end`: that boot ended, connected ("ok") or failed ("error"). */
export interface BootEndMessage extends BootStartMessage {
  outcome: "ok" | "error";
  /** Milliseconds from boot start to connected or failed. */
  duration: number;
  error?: Error;
}

/** `flame-ts:runner:shrink`: the pool decided to let a runner go, and why. */
export interface ShrinkMessage {
  pool: string;
  runnerId: string;
  reason: string;
}

/** `flame-ts:runner:exit`: a runner is gone, whatever ended it. */
export interface RunnerExitMessage {
  pool: string;
  runnerId: string;
  /** The pool's reason when it let the runner go; "exited" when the runner died on its own. */
  reason: string;
  /** Whether the pool asked for it (false: a crash, a lost connection). */
  expected: boolean;
  /** How it ended, as the connection and the backend tell it. */
  detail: string;
}

/** The TracingChannel of calls on the parent (`diagnostics_channel.tracingChannel(CALL_CHANNEL)`); its context is a CallChannelContext. */
export const CALL_CHANNEL = "flame-ts:call";
/** A plain channel: a BootStartMessage as a pool starts booting a runner. */
export const BOOT_START_CHANNEL = "flame-ts:runner:boot:start";
/** A plain channel: a BootEndMessage as that boot ends, either way. */
export const BOOT_END_CHANNEL = "flame-ts:runner:boot:end";
/** A plain channel: a ShrinkMessage as a pool decides to let a runner go. */
export const SHRINK_CHANNEL = "flame-ts:runner:shrink";
/** A plain channel: a RunnerExitMessage once a runner is gone. */
export const RUNNER_EXIT_CHANNEL = "flame-ts:runner:exit";

export const callChannel = diagnosticsChannel.tracingChannel<string, CallChannelContext>(CALL_CHANNEL);
export const bootStartChannel = topic<BootStartMessage>(BOOT_START_CHANNEL);
export const bootEndChannel = topic<BootEndMessage>(BOOT_END_CHANNEL);
export const shrinkChannel = topic<ShrinkMessage>(SHRINK_CHANNEL);
export const runnerExitChannel = topic<RunnerExitMessage>(RUNNER_EXIT_CHANNEL);

/** A plain channel whose messages are of type T. */
export interface Topic<T> {
  readonly channel: diagnosticsChannel.Channel;
  /** Publishes `build()`, building it only when someone listens. */
  publish(build: () => T): void;
}

function topic<T>(name: string): Topic<T> {
  const channel = diagnosticsChannel.channel(name);
  return {
    channel,
    publish(build) {
      if (channel.hasSubscribers) channel.publish(build());
    },
  };
}

/** Whether anyone listens to any event of the call channel (TracingChannel's own getter is missing from Node 20's types). */
export function callChannelHasSubscribers(): boolean {
  return (
    callChannel.start.hasSubscribers ||
    callChannel.end.hasSubscribers ||
    callChannel.asyncStart.hasSubscribers ||
    callChannel.asyncEnd.hasSubscribers ||
    callChannel.error.hasSubscribers
  );
}
