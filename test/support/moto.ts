/**
 * A moto server (the AWS API emulator) for the EC2 backend's tests: found,
 * started once per test file, reset between tests, stopped by its pid.
 *
 * moto is started through a shell that exits at once, so it is not a
 * descendant of the test worker: the suite's no-leftover-processes check
 * kills descendants after every test, and moto must live for the whole file.
 * A watchdog started the same way stops moto if the worker dies without
 * stopping it.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isAlive, waitFor } from "./processes.js";
import { Ec2Backend, type Ec2BackendOptions } from "../../src/backends/ec2.js";

export const MOTO_INSTALL_HINT = "pip install 'moto[server]'";
/** CI sets this so that a missing moto fails the EC2 tests instead of skipping them. */
export const REQUIRE_MOTO_VAR = "FLAME_REQUIRE_MOTO";
/** moto accepts any credentials; these only have to look like AWS's. */
export const MOTO_CREDENTIALS = { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "secret" } as const;
export const MOTO_REGION = "us-east-1";
/**
 * How often tests and the test backend ask moto for instance states, in ms. Each
 * DescribeInstances costs moto about 15 ms of CPU, so polling every 20 ms kept
 * it at half a core; a runner's boot takes longer than this anyway.
 */
export const MOTO_POLL = 100;

/** waitFor for a predicate that asks moto: polled every MOTO_POLL ms. */
export function waitForMoto(predicate: () => Promise<boolean>, what: string, timeout = 10_000): Promise<void> {
  return waitFor(predicate, what, timeout, MOTO_POLL);
}

/**
 * The modules `python3 -m moto.server` needs (moto and its [server] extra's).
 * They are looked up, not imported: importing moto.server takes half a second
 * of CPU, and every file with EC2 tests asks. A broken install still fails
 * clearly, at start, with moto's own output.
 */
const MOTO_SERVER_MODULES = ["moto", "flask", "flask_cors", "werkzeug"];
const MOTO_PROBE = `
import importlib.util, sys
missing = [name for name in sys.argv[1:] if importlib.util.find_spec(name) is None]
if missing: sys.exit("missing Python modules: " + ", ".join(missing))
`;

/** Whether `python3 -m moto.server` can run here, and why not. */
export function motoAvailability(): { available: true } | { available: false; reason: string } {
  const probe = spawnSync("python3", ["-c", MOTO_PROBE, ...MOTO_SERVER_MODULES], { encoding: "utf8", timeout: 20_000 });
  if (probe.status === 0) return { available: true };
  const detail = probe.error?.message ?? probe.stderr.trim().split("\n").at(-1) ?? `exit ${probe.status}`;
  return { available: false, reason: `moto is not installed (${detail}): ${MOTO_INSTALL_HINT}` };
}

export interface MotoServer {
  /** e.g. http://127.0.0.1:40123 */
  endpoint: string;
  pid: number;
  /** Wipes every resource (POST /moto-api/reset). */
  reset(): Promise<void>;
  /** Stops the server and waits for it to be gone. */
  stop(): Promise<void>;
}

const LAUNCHER = `
python3 -m moto.server -H 127.0.0.1 -p 0 >"$1" 2>&1 </dev/null &
moto=$!
( while kill -0 "$2" 2>/dev/null && kill -0 "$moto" 2>/dev/null; do sleep 1; done; kill "$moto" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
echo "$moto"
`;

/** Starts moto on a free port (moto picks it with -p 0; its log says which). */
export async function startMoto(): Promise<MotoServer> {
  const directory = mkdtempSync(join(tmpdir(), "flame-moto-"));
  const log = join(directory, "moto.log");
  const pid = Number(execFileSync("sh", ["-c", LAUNCHER, "sh", log, String(process.pid)], { encoding: "utf8" }).trim());
  const stop = async () => {
    if (isAlive(pid)) process.kill(pid, "SIGTERM");
    await waitFor(() => !isAlive(pid), "moto to stop", 5_000).catch(() => process.kill(pid, "SIGKILL"));
    rmSync(directory, { recursive: true, force: true });
  };
  try {
    let port = 0;
    await waitFor(
      () => {
        if (!isAlive(pid)) throw new Error(`moto exited at start: ${existsSync(log) ? readFileSync(log, "utf8") : "(no output)"}`);
        const match = existsSync(log) ? /Running on http:\/\/127\.0\.0\.1:(\d+)/.exec(readFileSync(log, "utf8")) : null;
        if (match) port = Number(match[1]);
        return port > 0;
      },
      "moto to listen",
      20_000,
    );
    const endpoint = `http://127.0.0.1:${port}`;
    const reset = async () => {
      const response = await fetch(`${endpoint}/moto-api/reset`, { method: "POST" });
      if (!response.ok) throw new Error(`moto reset answered ${response.status}`);
    };
    await reset();
    return { endpoint, pid, reset, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * An Ec2Backend pointed at `endpoint` (moto), with runners dialing back over
 * loopback and fast polls and retries for tests. `options` override any of it.
 * Runners get the parent's FLAME_BUILD_ID from the backend itself: set it in
 * the test's environment, not in `env`.
 */
export function testEc2Backend(
  endpoint: string,
  settings: { runnerImage: string; region?: string; credentials?: { accessKeyId: string; secretAccessKey: string } },
  options: Partial<Ec2BackendOptions> = {},
): Ec2Backend {
  return new Ec2Backend({
    region: settings.region ?? MOTO_REGION,
    endpoint,
    credentials: settings.credentials ?? MOTO_CREDENTIALS,
    runnerImage: settings.runnerImage,
    // Runners run on this host, not at the private IPs moto gives their instances.
    controlPlane: { host: "127.0.0.1", port: 0, advertisedHost: "127.0.0.1", checkRunnerAddress: false },
    statusPollInterval: 2 * MOTO_POLL,
    retryDelay: 50,
    ...options,
  } as Ec2BackendOptions);
}
