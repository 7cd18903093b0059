/**
 * One emulated Fly Machine: its config and state, and the real process it
 * "boots" (the init command, spawned with the environment Fly gives a
 * machine). States move as on Fly: created -> started -> stopping -> stopped
 * -> destroying -> destroyed; `auto_destroy` destroys a machine whose process
 * ended, and the restart policy decides whether it runs again first.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";

/** Machine states the emulator moves through, named as Fly names them. */
export type MachineState = "created" | "started" | "stopping" | "stopped" | "destroying" | "destroyed";

/** A machine's event, as Fly lists them (newest first). */
export interface MachineEvent {
  id: string;
  type: string;
  status: string;
  source: "user" | "flyd";
  timestamp: number;
  request?: Record<string, unknown>;
}

/** How the next machines boot, for tests of failures. */
export type BootFault =
  /** The process starts `delay` ms late (the machine stays "created" until then). */
  | { kind: "slow"; delay: number }
  /** The machine never starts: it stays "created" until destroyed. */
  | { kind: "never-start" }
  /** A process that crashes at once runs instead of the init command. */
  | { kind: "crash"; exitCode?: number };

/** What every machine of an emulator shares. */
export interface MachineHostSettings {
  app: string;
  cwd: string;
  baseEnv: Record<string, string>;
  secrets: Record<string, string>;
  /** Ms between a stop's signal and SIGKILL when nobody says. */
  stopTimeout: number;
  echoOutput: boolean;
}

/** Bytes of a machine's output kept for `machines()`. */
const OUTPUT_TAIL = 16_384;

/** One machine and the process it runs. */
export class EmulatedMachine {
  readonly id = randomBytes(7).toString("hex");
  readonly instanceId = ulidLike();
  /**
   * Where the machine is on the network: its process runs on this host, so
   * its connections come from loopback, as a Fly machine's come from its
   * private IPv6 address (the backend binds the runner's token to it).
   */
  readonly privateIp = "127.0.0.1";
  readonly createdAt = new Date().toISOString();
  updatedAt = this.createdAt;
  state: MachineState = "created";
  /** Newest first, as Fly returns them. */
  readonly events: MachineEvent[] = [];
  /** The environment the current (or last) process got. */
  env: Record<string, string> = {};
  pid: number | undefined;
  exitCode: number | undefined;
  output = "";
  restarts = 0;
  private process: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private timers = new Set<NodeJS.Timeout>();
  private waiters = new Set<{ states: Set<string>; resolve: (state: string) => void }>();

  constructor(
    readonly name: string,
    readonly region: string,
    readonly config: Record<string, any>,
    readonly skipSecrets: boolean,
    private readonly settings: MachineHostSettings,
  ) {
    this.record("launch", "created", "user");
  }

  /** Starts the machine's process, as Fly does after a create or a start. */
  boot(fault?: BootFault): void {
    if (fault?.kind === "never-start") return;
    const delay = fault?.kind === "slow" ? fault.delay : 0;
    this.later(delay, () => {
      if (this.state === "destroying" || this.state === "destroyed") return;
      this.spawnProcess(fault?.kind === "crash" ? crashCommand(fault.exitCode ?? 1) : this.command());
    });
  }

  /** Sends the stop signal, then SIGKILL after the timeout. */
  stop(signal: NodeJS.Signals | undefined, timeout: number | undefined): void {
    if (this.state !== "started" || !this.process) return;
    this.setState("stopping", "stop", "user");
    const stopConfig = (this.config.stop_config ?? {}) as { signal?: NodeJS.Signals; timeout?: string };
    this.process.kill(signal ?? stopConfig.signal ?? "SIGINT");
    const grace = timeout ?? parseDuration(stopConfig.timeout) ?? this.settings.stopTimeout;
    const child = this.process;
    this.later(grace, () => child.kill("SIGKILL"));
  }

  /** Destroys the machine, killing its process. Resolves once it is destroyed. */
  async destroy(): Promise<void> {
    if (this.state === "destroyed") return;
    this.clearTimers();
    if (this.process) {
      if (this.state !== "destroying") this.setState("destroying", "destroy", "user");
      this.process.kill("SIGKILL");
      await this.exited;
      return;
    }
    this.setState("destroyed", "destroy", "user");
  }

  /** Resolves with the state once the machine is in one of `states`, or undefined after `timeout` ms. */
  waitFor(states: Set<string>, timeout: number, cancelled: Promise<void>): Promise<string | undefined> {
    if (matches(states, this.state)) return Promise.resolve(this.state);
    return new Promise((resolve) => {
      const waiter = {
        states,
        resolve: (state: string) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(state);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        resolve(undefined);
      }, timeout);
      this.waiters.add(waiter);
      void cancelled.then(() => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve(undefined);
      });
    });
  }

  /** The Machine object of the API. */
  toJson(summary = false): Record<string, unknown> {
    return {
      id: this.id,
      name: this.name,
      state: this.state,
      region: this.region,
      instance_id: this.instanceId,
      private_ip: this.privateIp,
      created_at: this.createdAt,
      updated_at: this.updatedAt,
      host_status: "ok",
      image_ref: imageRef(String(this.config.image ?? "")),
      ...(summary ? {} : { config: this.config, events: this.events }),
    };
  }

  private command(): string[] {
    const init = (this.config.init ?? {}) as { cmd?: string[]; entrypoint?: string[]; exec?: string[] };
    return init.exec ?? [...(init.entrypoint ?? []), ...(init.cmd ?? [])];
  }

  /**
   * The app secrets this machine's process gets, as Fly decides: none with
   * `skip_secrets`; else the app's (unless its process sets
   * `ignore_app_secrets`) plus the process's `secrets`, each `env_var` set
   * from the app secret `name` (default: `env_var`). A listed secret the app
   * does not have is left unset. The emulator runs one process: the first.
   */
  private secretEnvironment(): Record<string, string> {
    if (this.skipSecrets) return {};
    const process = (this.config.processes?.[0] ?? {}) as { ignore_app_secrets?: boolean; secrets?: { env_var: string; name?: string }[] };
    const environment: Record<string, string> = process.ignore_app_secrets === true ? {} : { ...this.settings.secrets };
    for (const secret of process.secrets ?? []) {
      const name = secret.name ?? secret.env_var;
      if (Object.hasOwn(this.settings.secrets, name)) environment[secret.env_var] = this.settings.secrets[name]!;
    }
    return environment;
  }

  private spawnProcess(argv: string[]): void {
    this.env = {
      ...this.settings.baseEnv,
      FLY_APP_NAME: this.settings.app,
      FLY_MACHINE_ID: this.id,
      FLY_ALLOC_ID: this.id,
      FLY_MACHINE_VERSION: this.instanceId,
      FLY_REGION: this.region,
      FLY_IMAGE_REF: String(this.config.image ?? ""),
      FLY_PRIVATE_IP: this.privateIp,
      ...this.secretEnvironment(),
      ...((this.config.env ?? {}) as Record<string, string>),
    };
    if (argv.length === 0) {
      this.appendOutput("emulator: no init.cmd or init.exec: the emulator has no image to take a default command from\n");
      this.setState("started", "start", "flyd");
      this.onExit(127);
      return;
    }
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), { cwd: this.settings.cwd, env: this.env, stdio: ["ignore", "pipe", "pipe"] });
    } catch (error) {
      this.appendOutput(`emulator: could not start ${argv[0]}: ${(error as Error).message}\n`);
      this.setState("started", "start", "flyd");
      this.onExit(127);
      return;
    }
    this.process = child;
    this.pid = child.pid;
    this.exited = new Promise((resolve) => {
      child.once("error", (error) => {
        this.appendOutput(`emulator: could not start ${argv[0]}: ${error.message}\n`);
        if (child.pid === undefined) {
          this.process = undefined;
          this.onExit(127);
          resolve();
        }
      });
      child.once("exit", (code, signal) => {
        this.process = undefined;
        this.onExit(code ?? 128 + signalNumber(signal));
        resolve();
      });
    });
    for (const stream of [child.stdout!, child.stderr!]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => this.appendOutput(chunk));
    }
    this.setState("started", "start", "flyd");
  }

  private onExit(code: number): void {
    this.exitCode = code;
    this.pid = undefined;
    if (this.state === "destroying") {
      this.setState("destroyed", "destroy", "flyd");
      return;
    }
    const requested = this.state === "stopping";
    const restart = (this.config.restart ?? {}) as { policy?: string; max_retries?: number };
    const policy = restart.policy ?? "on-failure";
    const again = !requested && (policy === "always" || (policy === "on-failure" && code !== 0 && this.restarts < (restart.max_retries ?? 10)));
    this.record("exit", again ? "started" : "stopped", "flyd", {
      exit_event: { exit_code: code, requested_stop: requested, restarting: again, oom_killed: false, exited_at: new Date().toISOString() },
    });
    if (again) {
      this.restarts += 1;
      this.spawnProcess(this.command());
      return;
    }
    this.clearTimers();
    this.setState("stopped", undefined, "flyd");
    if (this.config.auto_destroy === true) this.setState("destroyed", "destroy", "flyd");
  }

  private setState(state: MachineState, eventType: string | undefined, source: MachineEvent["source"]): void {
    this.state = state;
    this.updatedAt = new Date().toISOString();
    if (eventType) this.record(eventType, state, source);
    for (const waiter of [...this.waiters]) if (matches(waiter.states, state)) waiter.resolve(state);
  }

  private record(type: string, status: string, source: MachineEvent["source"], request?: Record<string, unknown>): void {
    this.events.unshift({ id: ulidLike(), type, status, source, timestamp: Date.now(), ...(request ? { request } : {}) });
  }

  private appendOutput(text: string): void {
    this.output = (this.output + text).slice(-OUTPUT_TAIL);
    if (this.settings.echoOutput) {
      for (const line of text.split("\n")) if (line) process.stderr.write(`[fly-emulator ${this.id}] ${line}\n`);
    }
  }

  private later(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      run();
    }, ms);
    this.timers.add(timer);
  }

  private clearTimers(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}

/** "settled" is any state a machine rests in. */
function matches(states: Set<string>, state: string): boolean {
  return states.has(state) || (states.has("settled") && ["created", "started", "stopped", "destroyed"].includes(state));
}

function crashCommand(exitCode: number): string[] {
  return [process.execPath, "-e", `process.stderr.write("emulated crash on boot\\n"); process.exit(${exitCode})`];
}

/** A Go duration ("5s", "1500ms", "1m") in ms. */
export function parseDuration(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
  let total = 0;
  const rest = value.replace(/(\d+(?:\.\d+)?)(ms|s|m|h)/g, (_, amount: string, unit: string) => {
    total += Number(amount) * units[unit]!;
    return "";
  });
  return rest === "" ? total : undefined;
}

function imageRef(image: string): Record<string, unknown> {
  const [withoutDigest, digest] = image.split("@") as [string, string | undefined];
  const slash = withoutDigest.indexOf("/");
  const registry = slash > 0 && /[.:]/.test(withoutDigest.slice(0, slash)) ? withoutDigest.slice(0, slash) : "docker.io";
  const rest = registry === "docker.io" && !withoutDigest.startsWith("docker.io/") ? withoutDigest : withoutDigest.slice(slash + 1);
  const colon = rest.lastIndexOf(":");
  return {
    registry,
    repository: colon > 0 ? rest.slice(0, colon) : rest,
    tag: colon > 0 ? rest.slice(colon + 1) : "latest",
    digest: digest ?? "",
    labels: {},
  };
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
  return (signal && numbers[signal]) ?? 0;
}


/** 26 characters of Crockford base32, the shape of Fly's version and event ids. */
function ulidLike(): string {
  const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  return Array.from(randomBytes(26), (byte) => alphabet[byte % 32]).join("");
}
