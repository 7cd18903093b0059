/**
 * What FlyBackend does once it is used: talks to the Machines API, creates,
 * watches, destroys and lists the runner machines. Loaded by the shell
 * (../fly.ts) on first use, so a runner, which only constructs its backend,
 * never evaluates it or the API client.
 */
import { BackendError, ERROR_CODES } from "../../errors.js";
import type { ControlPlaneAddress } from "../../control-plane/address.js";
import type { ListedRunner, ProvisionedRunner, ProvisionRequest } from "../backend.js";
import { FlyApiClient } from "./api.js";
import { asMachineList, createBucketFor, createMachine, destroyMachine, GONE_STATES, IDEMPOTENT_RETRY_STATUSES, watchForExit } from "./machines.js";
import { createMachineRequest, METADATA, type ResolvedFlyOptions } from "./options.js";

/** FlyBackend's async methods, on options its shell resolved. */
export class FlyBackendImplementation {
  private client: FlyApiClient | undefined;
  /** Per runner, stops the watch for an early exit once the pool terminates it. */
  private readonly exitWatches = new Map<string, AbortController>();

  /** `controlPlane` is the shell's, which checks the parent can tell runners where it is. */
  constructor(
    private readonly options: ResolvedFlyOptions,
    private readonly controlPlane: () => ControlPlaneAddress,
  ) {}

  /**
   * Checks the settings are all there and that the token can see the app
   * (`GET /v1/apps/{app}`), so a bad token or app name fails the start with a
   * clear error before any machine is created.
   */
  async checkPermissions(): Promise<void> {
    const api = this.api();
    if (!this.options.image) throw configError(MISSING_IMAGE);
    this.controlPlane();
    await api.request("GET", api.appPath(), {
      action: `read app "${api.settings.app}"`,
      deadline: Date.now() + this.options.requestTimeout,
      retryStatuses: IDEMPOTENT_RETRY_STATUSES,
    });
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedRunner> {
    const api = this.api();
    const image = this.options.image;
    if (!image) throw configError(MISSING_IMAGE);
    const body = createMachineRequest({ ...this.options, image }, request);
    const machine = await createMachine(api, body, request, createBucketFor(this.options.baseUrl, api.settings.app));
    request.log.debug({ machineId: machine.id }, `created Fly machine ${machine.id} in app ${api.settings.app}`);
    const stopWatching = new AbortController();
    this.exitWatches.set(request.runnerId, stopWatching);
    const exited = watchForExit(api, machine, request, stopWatching.signal);
    void exited.finally(() => this.exitWatches.delete(request.runnerId));
    const address = this.options.controlPlane.checkRunnerAddress && typeof machine.private_ip === "string" ? machine.private_ip : undefined;
    return { runnerId: request.runnerId, providerId: machine.id, exited, ...(address ? { address } : {}) };
  }

  /** Destroys the runner's machine (`DELETE ?force=true`); a machine already gone (404) counts as destroyed. */
  async terminate(runner: ProvisionedRunner): Promise<void> {
    this.exitWatches.get(runner.runnerId)?.abort();
    this.exitWatches.delete(runner.runnerId);
    await destroyMachine(this.api(), runner.providerId, runner.runnerId);
  }

  /** Live runner machines of this app (optionally of one pool), found by their metadata. */
  async list(filter: { pool?: string } = {}): Promise<ListedRunner[]> {
    const api = this.api();
    const response = await api.request("GET", api.appPath("/machines"), {
      query: filter.pool === undefined ? {} : { [`metadata.${METADATA.pool}`]: filter.pool },
      action: "list runner machines",
      deadline: Date.now() + this.options.requestTimeout,
      retryStatuses: IDEMPOTENT_RETRY_STATUSES,
    });
    const listed: ListedRunner[] = [];
    for (const machine of asMachineList(response.body)) {
      const metadata = machine.config?.metadata ?? {};
      const runnerId = metadata[METADATA.runner];
      const pool = metadata[METADATA.pool];
      if (!runnerId || pool === undefined || GONE_STATES.has(machine.state ?? "")) continue;
      if (filter.pool !== undefined && pool !== filter.pool) continue;
      listed.push({ runnerId, providerId: machine.id, pool, parentId: metadata[METADATA.parent] ?? "", state: machine.state ?? "unknown" });
    }
    return listed;
  }

  private api(): FlyApiClient {
    if (this.client) return this.client;
    const { token, app, tokenSource, baseUrl, requestTimeout } = this.options;
    if (!token) throw configError('a Machines API token: set the "token" option or FLY_API_TOKEN (e.g. `fly secrets set FLY_API_TOKEN=$(fly tokens create deploy)`)');
    if (!app) throw configError('an app to create runner machines in: set the "app" option or FLY_APP_NAME (set by Fly on the parent\'s machine)');
    this.client = new FlyApiClient({ baseUrl, app, token, tokenSource, requestTimeout });
    return this.client;
  }
}

const MISSING_IMAGE = 'an image to boot runners from: set the "image" option or FLY_IMAGE_REF (set by Fly on the parent\'s machine)';

function configError(what: string): BackendError {
  return new BackendError(`FlyBackend needs ${what}`, { retryable: false, code: ERROR_CODES.FLAME_FLY_INVALID_CONFIGURATION });
}
