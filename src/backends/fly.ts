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
import { DeferredBackend, type BackendImplementation } from "./deferred-backend.js";
import { resolveFlyOptions, type FlyBackendOptions, type ResolvedFlyOptions } from "./fly/options.js";

export type { FlyBackendOptions, FlyGuestOptions, FlyInitOptions, FlySecret, FlyStopSignal } from "./fly/options.js";
export { FlyApiError } from "./fly/api-error.js";

/**
 * A Backend whose runners are Fly Machines. Options: see FlyBackendOptions
 * and docs/fly.md. `checkPermissions` reads the app (`GET /v1/apps/{app}`),
 * so a bad token or app name fails `pool.start()` before any machine is
 * created; `terminate` destroys the machine; `list` finds runner machines by
 * their metadata.
 */
export class FlyBackend extends DeferredBackend {
  readonly name = "fly";
  private readonly options: ResolvedFlyOptions;

  /**
   * Options are validated now; missing credentials (token, app, image) are
   * reported when the backend is first used, because the pool an app builds
   * on a runner constructs its backend too and never uses it.
   */
  constructor(options: FlyBackendOptions = {}) {
    super();
    this.options = resolveFlyOptions(options);
  }

  /** The Machines API side, made with these options. */
  protected async loadImplementation(): Promise<BackendImplementation> {
    const { FlyBackendImplementation } = await import("./fly/implementation.js");
    return new FlyBackendImplementation(this.options, () => this.controlPlane());
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
}
