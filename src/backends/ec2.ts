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
import type { Backend, ListedRunner, ProvisionedRunner, ProvisionRequest } from "./backend.js";
import { LoadedOnFirstUse } from "./load-on-first-use.js";
import { resolveEc2Options, type Ec2BackendOptions, type ResolvedEc2Options } from "./ec2/options.js";

export type { Ec2BackendOptions, Ec2Credentials, Ec2LaunchTemplate, Ec2SpotOptions, Ec2UserDataContext } from "./ec2/options.js";

/** Runners as EC2 instances that run the runner image and power off when the runner exits (docs/ec2.md). */
export class Ec2Backend implements Backend {
  readonly name = "ec2";
  /**
   * The boot timeout this backend needs, in ms: an EC2 boot (instance start,
   * Docker install, image pull) takes tens of seconds to minutes. Set the
   * pool's `bootTimeout` to at least this.
   */
  readonly defaultBootTimeout = 300_000;
  private readonly options: ResolvedEc2Options;
  /** The AWS side, made with these options the first time an async method runs. */
  private readonly implementation = new LoadedOnFirstUse(async () => {
    const { Ec2BackendImplementation } = await import("./ec2/implementation.js");
    return new Ec2BackendImplementation(this.options);
  });

  constructor(options: Ec2BackendOptions) {
    // Cheap on purpose: the app module that builds this backend also runs on every runner.
    this.options = resolveEc2Options(options);
  }

  /** The parent listens on 0.0.0.0:3526 and runners dial its private IP (from instance metadata), unless configured otherwise. */
  async controlPlane(): Promise<ControlPlaneAddress> {
    return (await this.implementation.get()).controlPlane();
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedRunner> {
    return (await this.implementation.get()).provision(request);
  }

  /** Terminates the runner's instance (and deletes its boot parameter); one already gone counts as terminated. */
  async terminate(runner: ProvisionedRunner): Promise<void> {
    await (await this.implementation.get()).terminate(runner);
  }

  /** Runner instances that still exist (optionally of one pool), found by their tags. */
  async list(filter: { pool?: string } = {}): Promise<ListedRunner[]> {
    return (await this.implementation.get()).list(filter);
  }

  /**
   * Asks EC2, with DryRun requests, whether the parent may launch runners as
   * configured and list them, and reads the AMI parameter. Resolves when all
   * is allowed; rejects with the BackendError of the first refusal. Costs nothing.
   */
  async checkPermissions(): Promise<void> {
    await (await this.implementation.get()).checkPermissions();
  }
}
