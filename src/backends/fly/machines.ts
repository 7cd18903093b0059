/**
 * The machine operations FlyBackend is made of: a paced, retried create that
 * never leaks or doubles a machine, a lookup by runner id, a destroy, and a
 * watch that tells a booting runner's pool when its machine is gone.
 */
import type { ProvisionRequest } from "../backend.js";
import { ERROR_CODES } from "../../errors.js";
import { retry, sleep, type RetryVerdict } from "../../retry.js";
import { isNoResponse, retryVerdict, type FlyApiClient, type FlyResponse } from "./api.js";
import { FlyApiError } from "./api-error.js";
import { METADATA } from "./options.js";
import { TokenBucket } from "./token-bucket.js";

/** The parts of Fly's Machine object the backend reads. */
export interface FlyMachine {
  id: string;
  /** The machine version (Fly also calls it the instance id). */
  instance_id?: string;
  name?: string;
  state?: string;
  /** The machine's address on the app's private network, where its connections come from. */
  private_ip?: string;
  config?: { metadata?: Record<string, string> };
  events?: { type?: string; status?: string; request?: Record<string, unknown> }[];
}

/** Statuses after which a create is tried again (with backoff), besides 429. */
const CREATE_RETRY_STATUSES = new Set([409, 412, 422]);
/** Statuses after which an idempotent call (list, destroy, get) is tried again, besides 429. */
export const IDEMPOTENT_RETRY_STATUSES = new Set([409, 412, 500, 502, 503, 504]);
/** States of a machine that is gone or going. */
export const GONE_STATES = new Set(["destroying", "destroyed"]);

/**
 * Fly limits creates per app to 1 per second with bursts of 3. Every
 * FlyBackend of this process creating in the same app shares one bucket, as
 * they share Fly's limit.
 */
const createBuckets = new Map<string, TokenBucket>();

/** The create bucket of `app` at `baseUrl`, shared by the process. */
export function createBucketFor(baseUrl: string, app: string): TokenBucket {
  const key = `${baseUrl}|${app}`;
  let bucket = createBuckets.get(key);
  if (!bucket) {
    bucket = new TokenBucket(1, 3);
    createBuckets.set(key, bucket);
  }
  return bucket;
}

/**
 * Creates the runner's machine. Throttling and conflicts are retried with
 * backoff until the boot deadline. When an attempt got no answer the machine
 * may exist anyway, so it is looked up by runner id before creating again,
 * and any duplicate found after a success is destroyed.
 *
 * The request itself is not aborted with `request.signal`: a create cut off
 * mid-flight could leave a machine nobody knows of, while a create allowed
 * to finish returns it, and the pool destroys what an abandoned boot returns.
 */
export async function createMachine(
  api: FlyApiClient,
  body: Record<string, unknown>,
  request: ProvisionRequest,
  bucket: TokenBucket,
): Promise<FlyMachine> {
  const action = `create a machine for runner ${request.runnerId}`;
  // True once an attempt may have created a machine we never heard about.
  let uncertain = false;
  const attempt = async (): Promise<FlyMachine> => {
    if (uncertain) {
      const found = await findRunnerMachines(api, request.runnerId, request.signal);
      if (found[0]) {
        request.log.info({ machineId: found[0].id }, `found machine ${found[0].id} made by a create whose answer was lost; using it`);
        return found[0];
      }
    }
    await paceCreate(api, bucket, request);
    let response: FlyResponse;
    try {
      const remaining = request.deadline - Date.now();
      response = await api.sendAction(action, "POST", api.appPath("/machines"), {
        body,
        timeout: Math.min(api.settings.requestTimeout, Math.max(1_000, remaining)),
      });
    } catch (error) {
      if (isNoResponse(error)) uncertain = true;
      throw error;
    }
    if (response.status >= 200 && response.status < 300) {
      const machine = asMachine(response.body);
      if (!machine) throw new FlyApiError(`could not ${action}: the Fly Machines API answered ${response.status} without a machine id (fly-request-id ${response.requestId ?? "none"})`, { retryable: true });
      if (uncertain) void destroyDuplicates(api, request, machine.id);
      return machine;
    }
    // A server error may come from a proxy after Fly made the machine, and a conflict may be our own
    // earlier attempt's machine: look it up before creating again, clean up if we give up.
    if (response.status >= 500 || response.status === 409) uncertain = true;
    throw api.errorFor(response, action);
  };
  try {
    return await retry(attempt, {
      deadline: request.deadline,
      signal: request.signal,
      shouldRetry: (error) => retryVerdict(error, CREATE_RETRY_STATUSES),
      onRetry: (error) => {
        const failure = error as FlyApiError;
        if (isNoResponse(failure)) request.log.warn({}, `${failure.message}; will look the machine up before trying again`);
        else request.log.debug({ status: failure.status, requestId: failure.requestId }, `${failure.message}; retrying`);
      },
      errorAtDeadline: (error, attempts) => gaveUpAtDeadline(error as FlyApiError, attempts),
    });
  } catch (error) {
    // Giving up while a machine might exist: find it and destroy it, so none is leaked.
    if (uncertain) void destroyDuplicates(api, request, undefined);
    throw error;
  }
}

/** Waits for this app's create budget; fails at once when the turn would come after the boot deadline. */
async function paceCreate(api: FlyApiClient, bucket: TokenBucket, request: ProvisionRequest): Promise<void> {
  const delay = bucket.delayOfNext();
  if (Date.now() + delay >= request.deadline) {
    throw new FlyApiError(
      `could not create a machine for runner ${request.runnerId} before its boot deadline: creates in app "${api.settings.app}" are paced to Fly's limit (1 per second, bursts of 3) and the next turn is in ${delay} ms`,
      { retryable: true, code: ERROR_CODES.FLAME_FLY_THROTTLED },
    );
  }
  const wait = bucket.reserve();
  if (wait === 0) return;
  try {
    await sleep(wait, request.signal);
  } catch (error) {
    bucket.giveBack();
    throw error;
  }
}

/** The last failure of a create, saying that the boot deadline, not the failure itself, ended the retries. */
function gaveUpAtDeadline(failure: FlyApiError, attempts: number): FlyApiError {
  return new FlyApiError(`${failure.message} (gave up after ${attempts} attempt${attempts === 1 ? "" : "s"}: the boot deadline is near)`, {
    retryable: failure.retryable,
    code: failure.code,
    cause: failure.cause,
    status: failure.status,
    requestId: failure.requestId,
    flyStatus: failure.flyStatus,
    retryAfter: failure.retryAfter,
  });
}

/** Live machines carrying this runner id in their metadata. */
export async function findRunnerMachines(api: FlyApiClient, runnerId: string, signal?: AbortSignal): Promise<FlyMachine[]> {
  const response = await api.request("GET", api.appPath("/machines"), {
    query: { [`metadata.${METADATA.runner}`]: runnerId },
    action: `look up the machine of runner ${runnerId}`,
    deadline: Date.now() + api.settings.requestTimeout,
    retryStatuses: IDEMPOTENT_RETRY_STATUSES,
    signal,
  });
  return asMachineList(response.body).filter(
    (machine) => machine.config?.metadata?.[METADATA.runner] === runnerId && !GONE_STATES.has(machine.state ?? ""),
  );
}

/** Destroys every machine of the runner except `keep`. Errors are logged: this is cleanup. */
async function destroyDuplicates(api: FlyApiClient, request: ProvisionRequest, keep: string | undefined): Promise<void> {
  try {
    const extra = (await findRunnerMachines(api, request.runnerId)).filter((machine) => machine.id !== keep);
    for (const machine of extra) {
      request.log.warn({ machineId: machine.id }, `destroying machine ${machine.id}: a second machine for runner ${request.runnerId} made by a create whose answer was lost`);
      await destroyMachine(api, machine.id, request.runnerId);
    }
  } catch (error) {
    request.log.error({ err: error }, `could not check runner ${request.runnerId} for leftover machines: ${(error as Error).message}`);
  }
}

/** Destroys a machine, killing it if it runs. A machine already gone counts as destroyed. */
export async function destroyMachine(api: FlyApiClient, machineId: string, runnerId: string): Promise<void> {
  await api.request("DELETE", api.appPath(`/machines/${encodeURIComponent(machineId)}`), {
    query: { force: true },
    action: `destroy machine ${machineId} (runner ${runnerId})`,
    deadline: Date.now() + api.settings.requestTimeout,
    retryStatuses: IDEMPOTENT_RETRY_STATUSES,
    acceptStatuses: new Set([404]),
  });
}

/**
 * Settles when the machine is destroyed (auto_destroy does it when the
 * runner's process exits), with a description for the pool, so a runner
 * that crashes while booting fails its boot at once instead of at
 * bootTimeout. Watches until the boot deadline or `stop`; never settles
 * otherwise.
 */
export async function watchForExit(api: FlyApiClient, machine: FlyMachine, request: ProvisionRequest, stop: AbortSignal): Promise<string> {
  const machineId = machine.id;
  const signal = AbortSignal.any([stop, request.signal]);
  const path = api.appPath(`/machines/${encodeURIComponent(machineId)}`);
  const action = `wait for machine ${machineId} to be destroyed`;
  const never = new Promise<string>(() => undefined);
  if (Date.now() >= request.deadline) return never;
  try {
    await retry(
      async () => {
        // Fly's wait takes whole seconds, at most 60.
        const seconds = Math.min(60, Math.max(1, Math.ceil((request.deadline - Date.now()) / 1_000)));
        const response = await api.sendAction(action, "GET", `${path}/wait`, {
          query: { state: "destroyed", timeout: seconds, version: machine.instance_id },
          timeout: seconds * 1_000 + 5_000,
          signal,
        });
        if (response.status !== 200 && response.status !== 404) throw api.errorFor(response, action);
      },
      { deadline: request.deadline, signal, shouldRetry: watchVerdict },
    );
  } catch (error) {
    if (!signal.aborted) request.log.debug({ machineId, err: error }, `stopped watching the machine for an early exit: ${(error as Error).message}`);
    return never;
  }
  return describeExit(api, machineId, path);
}

/** While watching: Fly's wait timing out (408) is asked again at once; a lost answer, throttling and server errors after a wait. */
function watchVerdict(error: unknown): RetryVerdict {
  if (!(error instanceof FlyApiError)) return false;
  if (error.status === 408) return { after: 0 };
  if (error.status !== undefined && error.status >= 500) return error.retryAfter !== undefined ? { after: error.retryAfter } : true;
  return retryVerdict(error);
}

async function describeExit(api: FlyApiClient, machineId: string, path: string): Promise<string> {
  let exitCode: unknown;
  try {
    const response = await api.send("GET", path);
    const exit = asMachine(response.body)?.events?.find((event) => event.type === "exit");
    exitCode = (exit?.request?.exit_event as { exit_code?: unknown } | undefined)?.exit_code;
  } catch {
    // The description is a courtesy; the machine is gone either way.
  }
  return `Fly machine ${machineId} ${exitCode !== undefined ? `exited with code ${String(exitCode)}` : "stopped"} and was destroyed; its output is in \`fly logs -a ${api.settings.app} -i ${machineId}\``;
}

/** `body` as a Machine, if it is one. */
export function asMachine(body: unknown): FlyMachine | undefined {
  return typeof body === "object" && body !== null && typeof (body as FlyMachine).id === "string" ? (body as FlyMachine) : undefined;
}

/** The Machines in a list response. */
export function asMachineList(body: unknown): FlyMachine[] {
  return Array.isArray(body) ? body.filter((item): item is FlyMachine => asMachine(item) !== undefined) : [];
}
