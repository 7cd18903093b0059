/**
 * FlyBackend: each runner is a Fly Machine booted from the parent's own image
 * (FLY_IMAGE_REF), running the runner agent, dialing back to the parent over
 * Fly's private network. Machines are created with `auto_destroy` and no
 * restart, so a runner whose process ends (idle shutdown, parent gone) takes
 * its machine with it. See docs/fly.md.
 *
 * This file is a shell: every runner evaluates it on its cold start (the app
 * module imports flame-ts and builds its pool and backend there too), so it
 * holds only what construction and `controlPlane()` need. The Machines API
 * client and the machines' lifecycle are in fly/implementation.ts, loaded on
 * first use of an async method.
 */
import { BackendError, ERROR_CODES } from "../errors.js";
import { advertisedAddress, type ControlPlaneAddress } from "../control-plane/address.js";
import type { Backend, ListedRunner, ProvisionedRunner, ProvisionRequest } from "./backend.js";
import { LoadedOnFirstUse } from "./load-on-first-use.js";
import { resolveFlyOptions, type FlyBackendOptions, type ResolvedFlyOptions } from "./fly/options.js";

export type { FlyBackendOptions, FlyGuestOptions, FlyInitOptions, FlySecret, FlyStopSignal } from "./fly/options.js";
export { FlyApiError } from "./fly/api-error.js";

/** A Backend whose runners are Fly Machines. Options: see FlyBackendOptions and docs/fly.md. */
export class FlyBackend implements Backend {
  readonly name = "fly";
  private readonly options: ResolvedFlyOptions;
  /** The Machines API side, made with these options the first time an async method runs. */
  private readonly implementation = new LoadedOnFirstUse(async () => {
    const { FlyBackendImplementation } = await import("./fly/implementation.js");
    return new FlyBackendImplementation(this.options, () => this.controlPlane());
  });

  /**
   * Options are validated now; missing credentials (token, app, image) are
   * reported when the backend is first used, because the pool an app builds
   * on a runner constructs its backend too and never uses it.
   */
  constructor(options: FlyBackendOptions = {}) {
    this.options = resolveFlyOptions(options);
  }

  /** The parent listens on `::` and runners dial `ws://[FLY_PRIVATE_IP]:<port>`, unless configured otherwise. */
  controlPlane(): ControlPlaneAddress {
    const { host, port, advertisedHost, tls } = this.options.controlPlane;
    if (!advertisedHost) {
      throw new BackendError(
        'FlyBackend cannot tell runners where to reach this parent: FLY_PRIVATE_IP is not set (is the parent running on Fly?) and the "controlPlane.advertisedHost" option is not given',
        { retryable: false, code: ERROR_CODES.FLAME_FLY_INVALID_CONFIGURATION },
      );
    }
    return advertisedAddress({ host, port, tls }, advertisedHost);
  }

  /**
   * Called by `pool.start()`: checks the settings are all there and that the
   * token can see the app, so a bad token or app name fails the start with a
   * clear error before any machine is created.
   */
  async checkPermissions(): Promise<void> {
    await (await this.implementation.get()).checkPermissions();
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedRunner> {
    return (await this.implementation.get()).provision(request);
  }

  /** Destroys the runner's machine; a machine already gone counts as destroyed. */
  async terminate(runner: ProvisionedRunner): Promise<void> {
    await (await this.implementation.get()).terminate(runner);
  }

  /** Live runner machines of this app (optionally of one pool), found by their metadata. */
  async list(filter: { pool?: string } = {}): Promise<ListedRunner[]> {
    return (await this.implementation.get()).list(filter);
  }
}
