/**
 * Ec2Backend: each runner is an EC2 instance. Its user data (a short bash
 * script) exports the runner's environment, runs the runner (by default the
 * `runnerImage` container with host networking) and powers the instance off
 * when the runner exits; instances are launched to terminate on power-off, so
 * a runner never outlives its agent. Runners dial the parent over the VPC.
 *
 * Options live in ec2/options.ts, the boot script in ec2/user-data.ts, the
 * launch request in ec2/run-instances.ts, error classification in
 * ec2/errors.ts.
 *
 * This file is a shell: every runner evaluates it on its cold start (the app
 * module imports flame-ts and builds its pool and backend there too), so it
 * holds only what construction needs. The rest is in ec2/implementation.ts,
 * loaded on first use of an async method; it loads the AWS SDK (ec2/clients.ts)
 * on first use in turn.
 */
import type { ControlPlaneAddress } from "../control-plane/address.js";
import { DeferredBackend, type BackendImplementation } from "./deferred-backend.js";
import { resolveEc2Options, type Ec2BackendOptions, type ResolvedEc2Options } from "./ec2/options.js";

export type { Ec2BackendOptions, Ec2Credentials, Ec2LaunchTemplate, Ec2SpotOptions, Ec2UserDataContext } from "./ec2/options.js";

/** What the shell hands over to: the backend's methods, and the address lookup from instance metadata. */
type Ec2Implementation = BackendImplementation & { controlPlane(): Promise<ControlPlaneAddress> };

/**
 * Runners as EC2 instances that run the runner image and power off when the
 * runner exits (docs/ec2.md). `checkPermissions` asks EC2, with DryRun
 * requests, whether the parent may launch runners as configured and list
 * them, and reads the AMI parameter (it costs nothing); `terminate` also
 * deletes the runner's boot parameter; `list` finds runner instances by their tags.
 */
export class Ec2Backend extends DeferredBackend<Ec2Implementation> {
  readonly name = "ec2";
  /**
   * The boot timeout this backend needs, in ms: an EC2 boot (instance start,
   * Docker install, image pull) takes tens of seconds to minutes. Set the
   * pool's `bootTimeout` to at least this.
   */
  readonly defaultBootTimeout = 300_000;
  private readonly options: ResolvedEc2Options;

  constructor(options: Ec2BackendOptions) {
    // Cheap on purpose: the app module that builds this backend also runs on every runner.
    super();
    this.options = resolveEc2Options(options);
  }

  /** The AWS side, made with these options. */
  protected async loadImplementation(): Promise<Ec2Implementation> {
    const { Ec2BackendImplementation } = await import("./ec2/implementation.js");
    return new Ec2BackendImplementation(this.options);
  }

  /** The parent listens on 0.0.0.0:3526 and runners dial its private IP (from instance metadata), unless configured otherwise. */
  async controlPlane(): Promise<ControlPlaneAddress> {
    return (await this.implementation()).controlPlane();
  }
}
