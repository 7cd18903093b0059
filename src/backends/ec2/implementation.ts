/**
 * What Ec2Backend does once it is used: finds the AMI and the parent's
 * address, writes each runner's user data (and its SSM boot parameter),
 * launches, watches, terminates and lists the instances. Loaded by the shell
 * (../ec2.ts) on first use, so a runner, which only constructs its backend,
 * never evaluates it. The AWS SDK is loaded later still, by clients.ts.
 */
import { BackendError } from "../../errors.js";
import type { Logger } from "../../log.js";
import { RUNNER_ENV_VAR } from "../../protocol/runner-env.js";
import { advertisedAddress, type ControlPlaneAddress } from "../../control-plane/address.js";
import type { ListedRunner, ProvisionedRunner, ProvisionRequest } from "../backend.js";
import { createClients, type AwsClients } from "./clients.js";
import { awsErrorCode, classifyAwsError, EC2_ERROR_CODES, isSpotCapacityError } from "./errors.js";
import { privateIpFromMetadata } from "./instance-metadata.js";
import { InstanceWatch } from "./instance-watch.js";
import type { ResolvedEc2Options } from "./options.js";
import { clientToken, EC2_TAGS, runInstancesInput, runnerTags } from "./run-instances.js";
import { bootScript, USER_DATA_LIMIT } from "./user-data.js";
import { runnerEnvironment } from "../runner-launch.js";
import { retry } from "../../retry.js";

/** Highest ceiling of the backoff between launch attempts, in ms (the first is `retryDelay`). */
const RETRY_DELAY_CAP = 20_000;
/** States of instances that still exist (and cost): what `list` returns. */
const LISTED_STATES = ["pending", "running", "stopping", "stopped"];

/** Ec2Backend's async methods, on options its shell resolved. */
export class Ec2BackendImplementation {
  private clients: Promise<AwsClients> | undefined;
  private resolvedImageId: Promise<string | undefined> | undefined;
  private advertisedHost: string | undefined;
  private advertisedHostLookup: Promise<string> | undefined;
  private readonly watch: InstanceWatch;
  private log: Logger | undefined;

  constructor(private readonly options: ResolvedEc2Options) {
    this.advertisedHost = this.options.controlPlane.advertisedHost;
    this.watch = new InstanceWatch(
      async () => {
        const { ec2, sdk } = await this.aws();
        return { ec2, module: sdk.ec2 };
      },
      this.options.statusPollInterval,
      () => this.log,
    );
  }

  /** The parent listens on 0.0.0.0:3526 and runners dial its private IP (from instance metadata), unless configured otherwise. */
  async controlPlane(): Promise<ControlPlaneAddress> {
    return advertisedAddress(this.options.controlPlane, await this.resolveAdvertisedHost());
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedRunner> {
    this.log = request.log;
    const clients = await this.aws();
    // The entry option overrides the pool's; the user data exports all of it (FLAME_PARENT aside with "ssm").
    const env = runnerEnvironment({ env: request.env, entry: this.options.entry ?? request.entry }, this.options.env);
    const imageId = await this.imageId();
    const parameterName = this.options.tokenTransport === "ssm" ? this.parameterName(request.runnerId) : undefined;
    const scriptEnv = { ...env };
    if (parameterName !== undefined) delete scriptEnv[RUNNER_ENV_VAR];
    const userData = this.userData(request, scriptEnv, parameterName, clients.region);

    if (parameterName !== undefined) await this.putBootParameter(clients, parameterName, env[RUNNER_ENV_VAR] ?? "", request);
    let instance: LaunchedInstance;
    try {
      instance = await this.launch(clients, request, imageId, userData);
    } catch (error) {
      if (parameterName !== undefined) await this.deleteBootParameter(clients, parameterName, request.log);
      throw error;
    }
    const { instanceId, privateIp } = instance;
    const address = this.options.controlPlane.checkRunnerAddress ? privateIp : undefined;
    return { runnerId: request.runnerId, providerId: instanceId, exited: this.watch.watch(instanceId, request.deadline), ...(address ? { address } : {}) };
  }

  async terminate(runner: ProvisionedRunner): Promise<void> {
    this.watch.forget(runner.providerId);
    const clients = await this.aws();
    const parameter =
      this.options.tokenTransport === "ssm" ? this.deleteBootParameter(clients, this.parameterName(runner.runnerId), this.log) : undefined;
    try {
      if (/^i-[0-9a-f]+$/.test(runner.providerId)) {
        await clients.ec2.send(new clients.sdk.ec2.TerminateInstancesCommand({ InstanceIds: [runner.providerId] }));
      }
    } catch (error) {
      // Already gone is what we wanted.
      if (!awsErrorCode(error).startsWith("InvalidInstanceID")) throw classifyAwsError("EC2 TerminateInstances", error);
    } finally {
      await parameter;
    }
  }

  async list(filter: { pool?: string } = {}): Promise<ListedRunner[]> {
    const { ec2, sdk } = await this.aws();
    const filters = [
      { Name: "tag-key", Values: [EC2_TAGS.runner] },
      { Name: "instance-state-name", Values: LISTED_STATES },
      ...(filter.pool !== undefined ? [{ Name: `tag:${EC2_TAGS.pool}`, Values: [filter.pool] }] : []),
      ...Object.entries(this.options.tags).map(([key, value]) => ({ Name: `tag:${key}`, Values: [value] })),
    ];
    const listed: ListedRunner[] = [];
    try {
      for await (const page of sdk.ec2.paginateDescribeInstances({ client: ec2 }, { Filters: filters })) {
        for (const instance of (page.Reservations ?? []).flatMap((reservation) => reservation.Instances ?? [])) {
          const tags = new Map((instance.Tags ?? []).map((tag) => [tag.Key, tag.Value]));
          listed.push({
            runnerId: tags.get(EC2_TAGS.runner) ?? "",
            providerId: instance.InstanceId ?? "",
            pool: tags.get(EC2_TAGS.pool) ?? "",
            parentId: tags.get(EC2_TAGS.parent) ?? "",
            state: instance.State?.Name ?? "unknown",
          });
        }
      }
    } catch (error) {
      throw classifyAwsError("EC2 DescribeInstances", error);
    }
    return listed;
  }

  /**
   * Asks EC2, with DryRun requests, whether the parent may launch runners as
   * configured (RunInstances with its tags, instance profile, subnet and
   * groups) and list them, and reads the AMI parameter. Resolves when all is
   * allowed; rejects with the BackendError of the first refusal. Costs nothing.
   */
  async checkPermissions(): Promise<void> {
    const clients = await this.aws();
    const imageId = await this.imageId();
    const request = { runnerId: "flame-permission-check", pool: "permission-check", parentId: "permission-check" };
    const launch = runInstancesInput(this.options, request, imageId, "#!/bin/bash\n", this.options.spot !== undefined, undefined);
    const checks: Array<[string, () => Promise<unknown>]> = [
      ["RunInstances", () => clients.ec2.send(new clients.sdk.ec2.RunInstancesCommand({ ...launch, DryRun: true }))],
      ["DescribeInstances", () => clients.ec2.send(new clients.sdk.ec2.DescribeInstancesCommand({ DryRun: true }))],
    ];
    for (const [operation, check] of checks) {
      try {
        await check();
      } catch (error) {
        if (awsErrorCode(error) !== "DryRunOperation") throw classifyAwsError(`EC2 ${operation} (dry run)`, error);
      }
    }
  }

  // ---- provisioning steps --------------------------------------------------

  private aws(): Promise<AwsClients> {
    this.clients ??= createClients(this.options);
    this.clients.catch(() => (this.clients = undefined));
    return this.clients;
  }

  /** The AMI: `imageId`, the cached value of `imageParameter`, or none (the launch template's). */
  private imageId(): Promise<string | undefined> {
    if (this.options.imageId !== undefined || this.options.imageParameter === undefined) return Promise.resolve(this.options.imageId);
    const name = this.options.imageParameter;
    this.resolvedImageId ??= this.aws().then(async ({ ssm, sdk }) => {
      try {
        const output = await ssm.send(new sdk.ssm.GetParameterCommand({ Name: name }));
        const value = output.Parameter?.Value;
        if (!value || !/^ami-[0-9a-f]+$/.test(value)) {
          throw new BackendError(`the SSM parameter ${name} ("imageParameter") does not hold an AMI id`, {
            retryable: false,
            code: EC2_ERROR_CODES.invalidConfiguration,
          });
        }
        return value;
      } catch (error) {
        throw classifyAwsError(`SSM GetParameter ${name}`, error);
      }
    });
    // A failed lookup is not cached: the next boot asks again.
    this.resolvedImageId.catch(() => (this.resolvedImageId = undefined));
    return this.resolvedImageId;
  }

  /** `controlPlane.advertisedHost`, else the parent's private IP from instance metadata, read once (a failed read is not kept). */
  private resolveAdvertisedHost(): Promise<string> {
    if (this.advertisedHost !== undefined) return Promise.resolve(this.advertisedHost);
    this.advertisedHostLookup ??= privateIpFromMetadata().then((address) => (this.advertisedHost = address));
    this.advertisedHostLookup.catch(() => (this.advertisedHostLookup = undefined));
    return this.advertisedHostLookup;
  }

  private parameterName(runnerId: string): string {
    return `${this.options.ssmParameterPrefix}/${runnerId}`;
  }

  private userData(request: ProvisionRequest, env: Record<string, string>, parameterName: string | undefined, region: string): string {
    const defaultScript = bootScript({
      runnerId: request.runnerId,
      pool: request.pool,
      env,
      parameterName,
      region,
      runnerImage: this.options.runnerImage,
      runnerCommand: this.options.runnerCommand,
    });
    const script = this.options.userData
      ? this.options.userData({ runnerId: request.runnerId, pool: request.pool, env, parameterName, region, defaultScript })
      : defaultScript;
    if (typeof script !== "string" || script.length === 0) {
      throw new BackendError('the Ec2Backend "userData" function must return the boot script as a non-empty string', {
        retryable: false,
        code: EC2_ERROR_CODES.invalidConfiguration,
      });
    }
    if (Buffer.byteLength(script) > USER_DATA_LIMIT) {
      throw new BackendError(`the runner's boot script is ${Buffer.byteLength(script)} bytes; EC2 user data is limited to ${USER_DATA_LIMIT}`, {
        retryable: false,
        code: EC2_ERROR_CODES.invalidConfiguration,
      });
    }
    return script;
  }

  private async putBootParameter(clients: AwsClients, name: string, value: string, request: ProvisionRequest): Promise<void> {
    try {
      await clients.ssm.send(
        new clients.sdk.ssm.PutParameterCommand({
          Name: name,
          Value: value,
          Type: "SecureString",
          Description: `flame-ts boot token of runner ${request.runnerId}; deleted once read`,
          Tags: this.tags(request),
        }),
      );
    } catch (error) {
      throw classifyAwsError(`SSM PutParameter ${name}`, error);
    }
  }

  /** Deletes a boot parameter; never fails (a leftover's token is worthless once its boot is over). */
  private async deleteBootParameter(clients: AwsClients, name: string, log: Logger | undefined): Promise<void> {
    try {
      await clients.ssm.send(new clients.sdk.ssm.DeleteParameterCommand({ Name: name }));
    } catch (error) {
      if (awsErrorCode(error) === "ParameterNotFound") return;
      log?.warn({ err: error }, `could not delete the boot parameter ${name}: ${(error as Error).message}`);
    }
  }

  /**
   * RunInstances, retried with backoff on capacity and throttling errors until
   * the boot deadline, and moved from spot to on-demand when spot has no
   * capacity. Each attempt after a definite failure gets its own client token
   * (a failed request's token must not be reused with other parameters).
   */
  private async launch(clients: AwsClients, request: ProvisionRequest, imageId: string | undefined, userData: string): Promise<LaunchedInstance> {
    let spot = this.options.spot !== undefined;
    let requests = 0;
    const runInstances = async (): Promise<LaunchedInstance> => {
      requests += 1;
      const input = runInstancesInput(this.options, request, imageId, userData, spot, clientToken(request.runnerId, requests));
      // No abort signal: a request cut off midway may still launch; let it answer so the pool can terminate what it made.
      const output = await clients.ec2.send(new clients.sdk.ec2.RunInstancesCommand(input));
      const instanceId = output.Instances?.[0]?.InstanceId;
      if (!instanceId) throw new BackendError("EC2 RunInstances answered without an instance", { retryable: true, code: EC2_ERROR_CODES.failed });
      request.log.debug({ runnerId: request.runnerId, instanceId, spot }, `launched EC2 instance ${instanceId}`);
      return { instanceId, privateIp: output.Instances?.[0]?.PrivateIpAddress };
    };
    // Spot without capacity moves to on-demand at once, within the same attempt.
    const launchOnce = async (): Promise<LaunchedInstance> => {
      try {
        return await runInstances();
      } catch (error) {
        if (!(spot && this.options.spot?.fallbackToOnDemand && isSpotCapacityError(error))) throw error;
        request.log.warn({ runnerId: request.runnerId }, `no spot capacity (${awsErrorCode(error)}); launching on-demand instead`);
        spot = false;
        return await runInstances();
      }
    };
    let lastFailure: BackendError | undefined;
    try {
      return await retry(
        () =>
          launchOnce().catch((error: unknown) => {
            throw (lastFailure = classifyAwsError("EC2 RunInstances", error));
          }),
        {
          deadline: request.deadline,
          signal: request.signal,
          baseDelay: this.options.retryDelay,
          maxDelay: Math.max(RETRY_DELAY_CAP, this.options.retryDelay),
          shouldRetry: (failure) => (failure as BackendError).retryable,
          onRetry: (failure, attempt, delay) =>
            request.log.warn({ runnerId: request.runnerId, attempt }, `${(failure as BackendError).message}; retrying in ${delay} ms`),
        },
      );
    } catch (error) {
      // An abandoned boot reports what kept its instance from launching, not why the pool gave up on it.
      if (!request.signal.aborted || error !== request.signal.reason) throw error;
      throw (
        lastFailure ??
        new BackendError(`the boot of runner ${request.runnerId} was abandoned before its instance was launched`, {
          retryable: true,
          cause: request.signal.reason,
          code: EC2_ERROR_CODES.failed,
        })
      );
    }
  }

  private tags(request: Pick<ProvisionRequest, "runnerId" | "pool" | "parentId">) {
    return runnerTags(request, this.options.tags);
  }
}

/** A launched runner instance: its id, and the private address its connections will come from (RunInstances says it at once). */
interface LaunchedInstance {
  instanceId: string;
  privateIp: string | undefined;
}
