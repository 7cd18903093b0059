/**
 * The EC2 backend's requests and error paths that moto cannot produce
 * (capacity, throttling, quotas, refused permissions), against
 * aws-sdk-client-mock: every AWS call is answered by the stubs below.
 */
import {
  DescribeInstancesCommand,
  EC2Client,
  EC2ServiceException,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type RunInstancesCommandInput,
} from "@aws-sdk/client-ec2";
import { DeleteParameterCommand, GetParameterCommand, PutParameterCommand, SSMClient, SSMServiceException } from "@aws-sdk/client-ssm";
import { mockClient } from "aws-sdk-client-mock";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BackendError, BootError, type Logger, type ProvisionRequest } from "../../src/index.js";
import { Ec2Backend, type Ec2BackendOptions } from "../../src/backends/ec2.js";
import { clientToken } from "../../src/backends/ec2/run-instances.js";
import { decodeRunnerEnv, encodeRunnerEnv } from "../../src/protocol/runner-env.js";
import { makePool } from "../fixtures/app.js";

const TOKEN = "one-time-token-that-must-never-leak";
const ec2Mock = mockClient(EC2Client);
const ssmMock = mockClient(SSMClient);

/** A logger that keeps every line, to check what is (and is not) logged. */
function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const record = (fields: Record<string, unknown>, message: string) => void lines.push(`${message} ${JSON.stringify(fields, (_key, value) => (value instanceof Error ? value.message : value))}`);
  return { lines, debug: record, info: record, warn: record, error: record };
}

function backend(options: Partial<Ec2BackendOptions> = {}): Ec2Backend {
  return new Ec2Backend({
    region: "eu-west-1",
    credentials: { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "secret" },
    imageId: "ami-0123456789abcdef0",
    runnerImage: "registry.example.com/app:1",
    controlPlane: { advertisedHost: "10.0.0.5" },
    retryDelay: 10,
    statusPollInterval: 60_000,
    ...options,
  } as Ec2BackendOptions);
}

function request(overrides: Partial<ProvisionRequest> = {}): ProvisionRequest & { log: ReturnType<typeof recordingLogger> } {
  const runnerId = overrides.runnerId ?? "thumbs-1-abc123";
  return {
    runnerId,
    pool: "thumbs",
    parentId: "parent-42",
    env: {
      FLAME_PARENT: encodeRunnerEnv({ parentUrl: "ws://10.0.0.5:3526", runnerId, pool: "thumbs", token: TOKEN, connectTimeout: 20_000, heartbeatInterval: 5_000 }),
    },
    entry: "/app/dist/main.js",
    deadline: Date.now() + 5_000,
    signal: new AbortController().signal,
    ...overrides,
    log: recordingLogger(),
  };
}

function awsError(name: string, fault: "client" | "server" = "client"): EC2ServiceException {
  return new EC2ServiceException({ name, $fault: fault, $metadata: { httpStatusCode: fault === "client" ? 400 : 503 }, message: `AWS says ${name}` });
}

const launched = { Instances: [{ InstanceId: "i-0aaaaaaaaaaaaaaa1" }] };
const runInputs = () => ec2Mock.commandCalls(RunInstancesCommand).map((call) => call.args[0].input as RunInstancesCommandInput);
const userDataOf = (input: RunInstancesCommandInput) => Buffer.from(input.UserData!, "base64").toString("utf8");

beforeEach(() => {
  ec2Mock.reset();
  ssmMock.reset();
});

afterEach(() => {
  // Nothing logged or thrown may carry the runner's token.
  for (const call of ec2Mock.commandCalls(RunInstancesCommand)) expect(JSON.stringify(call.args[0].input)).not.toContain("must-never-leak\"");
});

describe("Ec2Backend RunInstances request", () => {
  it("launches one instance with the runner id as client token, tags, IMDSv2, terminate on shutdown, and user data", async () => {
    ec2Mock.on(RunInstancesCommand).resolves(launched);
    const ec2Backend = backend({
      subnetId: "subnet-0abc",
      securityGroupIds: ["sg-0abc"],
      iamInstanceProfile: "flame-runner",
      keyName: "ops",
      tags: { app: "thumbs" },
    });
    const runner = await ec2Backend.provision(request());

    expect(runner).toMatchObject({ runnerId: "thumbs-1-abc123", providerId: "i-0aaaaaaaaaaaaaaa1" });
    const [input] = runInputs();
    expect(input).toMatchObject({
      MinCount: 1,
      MaxCount: 1,
      ClientToken: "thumbs-1-abc123",
      ImageId: "ami-0123456789abcdef0",
      InstanceType: "t3.small",
      SubnetId: "subnet-0abc",
      SecurityGroupIds: ["sg-0abc"],
      IamInstanceProfile: { Name: "flame-runner" },
      KeyName: "ops",
      InstanceInitiatedShutdownBehavior: "terminate",
      MetadataOptions: { HttpTokens: "required" },
    });
    expect(input!.InstanceMarketOptions).toBeUndefined();
    const flameTags = [
      { Key: "flame:pool", Value: "thumbs" },
      { Key: "flame:parent", Value: "parent-42" },
      { Key: "flame:runner", Value: "thumbs-1-abc123" },
      { Key: "app", Value: "thumbs" },
    ];
    expect(input!.TagSpecifications).toEqual([
      { ResourceType: "instance", Tags: [{ Key: "Name", Value: "flame-ts thumbs-1-abc123" }, ...flameTags] },
      { ResourceType: "volume", Tags: flameTags },
    ]);
    const script = userDataOf(input!);
    expect(script).toMatch(/^#!\/bin\/bash\n/);
    expect(script).toContain("export FLAME_ENTRY='/app/dist/main.js'");
    const encoded = /export FLAME_PARENT='([^']+)'/.exec(script)![1]!;
    expect(decodeRunnerEnv(encoded)).toMatchObject({ runnerId: "thumbs-1-abc123", token: TOKEN, parentUrl: "ws://10.0.0.5:3526" });
  });

  it("passes an instance profile ARN as an ARN, a launch template, and spot options", async () => {
    ec2Mock.on(RunInstancesCommand).resolves(launched);
    await backend({
      imageId: undefined,
      launchTemplate: { name: "flame-runners", version: "$Latest" },
      iamInstanceProfile: "arn:aws:iam::123456789012:instance-profile/flame-runner",
      spot: { maxPrice: "0.05" },
    }).provision(request());
    const [input] = runInputs();
    expect(input).toMatchObject({
      LaunchTemplate: { LaunchTemplateName: "flame-runners", Version: "$Latest" },
      IamInstanceProfile: { Arn: "arn:aws:iam::123456789012:instance-profile/flame-runner" },
      InstanceMarketOptions: {
        MarketType: "spot",
        SpotOptions: { SpotInstanceType: "one-time", InstanceInterruptionBehavior: "terminate", MaxPrice: "0.05" },
      },
    });
    // A launch template brings its own AMI and type.
    expect(input!.ImageId).toBeUndefined();
    expect(input!.InstanceType).toBeUndefined();
    expect(input!.TagSpecifications!.map((spec) => spec.ResourceType)).toEqual(["instance", "volume", "spot-instances-request"]);
  });

  it("keeps client tokens within EC2's 64 characters", () => {
    const long = `${"p".repeat(63)}-1-abcdef`;
    expect(clientToken(long, 1).length).toBeLessThanOrEqual(64);
    expect(clientToken(long, 1)).toBe(clientToken(long, 1));
    expect(clientToken(long, 2)).toMatch(/\.2$/);
    expect(clientToken("short-1-abc", 1)).toBe("short-1-abc");
  });

  it("reads the AMI parameter once, and asks again after a failure", async () => {
    ec2Mock.on(RunInstancesCommand).resolves(launched);
    ssmMock
      .on(GetParameterCommand)
      .rejectsOnce(new SSMServiceException({ name: "ThrottlingException", $fault: "client", $metadata: {}, message: "slow down" }))
      .resolves({ Parameter: { Value: "ami-0ffffffffffffffff" } });
    const ec2Backend = backend({ imageId: undefined, imageParameter: "/my/ami" });
    await expect(ec2Backend.provision(request())).rejects.toMatchObject({ retryable: true, message: expect.stringContaining("ThrottlingException") });
    await ec2Backend.provision(request({ runnerId: "thumbs-2-bbb" }));
    await ec2Backend.provision(request({ runnerId: "thumbs-3-ccc" }));
    expect(ssmMock.commandCalls(GetParameterCommand)).toHaveLength(2);
    expect(runInputs().map((input) => input.ImageId)).toEqual(["ami-0ffffffffffffffff", "ami-0ffffffffffffffff"]);
  });
});

describe("Ec2Backend launch errors", () => {
  it("retries a capacity error with a new client token, then is served", async () => {
    ec2Mock.on(RunInstancesCommand).rejectsOnce(awsError("InsufficientInstanceCapacity", "server")).resolves(launched);
    const boot = request();
    const runner = await backend().provision(boot);
    expect(runner.providerId).toBe("i-0aaaaaaaaaaaaaaa1");
    expect(runInputs().map((input) => input.ClientToken)).toEqual(["thumbs-1-abc123", "thumbs-1-abc123.2"]);
    expect(boot.log.lines.join("\n")).toMatch(/InsufficientInstanceCapacity.*retrying/);
    expect(boot.log.lines.join("\n")).not.toContain(TOKEN);
  });

  it("retries throttling until the boot deadline, then fails retryable", async () => {
    ec2Mock.on(RunInstancesCommand).rejects(awsError("RequestLimitExceeded"));
    const failure = await backend().provision(request({ deadline: Date.now() + 300 })).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(BackendError);
    expect(failure).toMatchObject({ retryable: true, code: "FLAME_EC2_THROTTLED" });
    expect(runInputs().length).toBeGreaterThan(2);
  });

  it("stops retrying as soon as the boot is abandoned", async () => {
    ec2Mock.on(RunInstancesCommand).rejects(awsError("InsufficientInstanceCapacity", "server"));
    const abandon = new AbortController();
    const provisioning = backend({ retryDelay: 60_000 }).provision(request({ signal: abandon.signal, deadline: Date.now() + 600_000 }));
    await expect.poll(() => runInputs().length).toBe(1);
    abandon.abort(new Error("pool stopped"));
    await expect(provisioning).rejects.toMatchObject({ code: "FLAME_EC2_CAPACITY" });
    // Abandoned before it started: nothing is launched.
    await expect(backend().provision(request({ signal: abandon.signal }))).rejects.toMatchObject({ message: expect.stringContaining("abandoned") });
    expect(runInputs()).toHaveLength(1);
  });

  const fatal: Array<[string, RegExp, string]> = [
    ["UnauthorizedOperation", /not allowed.*IAM permissions/, "FLAME_EC2_UNAUTHORIZED"],
    ["AuthFailure", /credentials are invalid/, "FLAME_EC2_UNAUTHORIZED"],
    ["InvalidAMIID.NotFound", /"imageId"/, "FLAME_EC2_INVALID_CONFIGURATION"],
    ["InvalidSubnetID.NotFound", /"subnetId"/, "FLAME_EC2_INVALID_CONFIGURATION"],
    ["InvalidGroup.NotFound", /"securityGroupIds"/, "FLAME_EC2_INVALID_CONFIGURATION"],
    ["InvalidParameterValue", /"iamInstanceProfile"/, "FLAME_EC2_INVALID_CONFIGURATION"],
    ["VcpuLimitExceeded", /quota/, "FLAME_EC2_QUOTA"],
    ["InstanceLimitExceeded", /quota/, "FLAME_EC2_QUOTA"],
  ];
  it.each(fatal)("fails fast on %s, saying what to fix", async (name, hint, code) => {
    ec2Mock.on(RunInstancesCommand).rejects(awsError(name));
    const failure = await backend().provision(request()).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(BackendError);
    expect(failure).toMatchObject({ retryable: false, code });
    expect((failure as Error).message).toContain(name);
    expect((failure as Error).message).toMatch(hint);
    expect((failure as Error).message).not.toContain(TOKEN);
    expect(runInputs()).toHaveLength(1);
  });

  it("a quota error fails the pool's waiting call at once, clearly, without retrying", async () => {
    ec2Mock.on(RunInstancesCommand).rejects(awsError("VcpuLimitExceeded"));
    const { pool, echo } = makePool({
      name: "ec2-quota",
      max: 2,
      bootTimeout: 20_000,
      backend: backend({ controlPlane: { host: "127.0.0.1", port: 0, advertisedHost: "10.0.0.5" } }),
    });
    try {
      const failure = await echo(1).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(BootError);
      expect((failure as Error).message).toMatch(/ec2 backend could not start runner .*VcpuLimitExceeded.*quota/);
      expect((failure as BootError).cause).toMatchObject({ retryable: false, code: "FLAME_EC2_QUOTA" });
      expect(runInputs()).toHaveLength(1);
    } finally {
      await pool.stop();
    }
  });

  it("falls back from spot to on-demand when spot has no capacity", async () => {
    ec2Mock.on(RunInstancesCommand).rejectsOnce(awsError("InsufficientInstanceCapacity", "server")).resolves(launched);
    const boot = request();
    await backend({ spot: true }).provision(boot);
    const [spotAttempt, onDemand] = runInputs();
    expect(spotAttempt!.InstanceMarketOptions?.MarketType).toBe("spot");
    expect(onDemand!.InstanceMarketOptions).toBeUndefined();
    expect(onDemand!.ClientToken).not.toBe(spotAttempt!.ClientToken);
    expect(boot.log.lines.join("\n")).toContain("launching on-demand instead");
  });

  it("stays on spot when told not to fall back", async () => {
    ec2Mock.on(RunInstancesCommand).rejectsOnce(awsError("SpotMaxPriceTooLow")).resolves(launched);
    await backend({ spot: { fallbackToOnDemand: false } }).provision(request());
    expect(runInputs().map((input) => input.InstanceMarketOptions?.MarketType)).toEqual(["spot", "spot"]);
  });
});

describe("Ec2Backend boot parameter (tokenTransport ssm)", () => {
  it("stores FLAME_PARENT as a SecureString named in user data, which holds no token", async () => {
    ec2Mock.on(RunInstancesCommand).resolves(launched);
    ssmMock.on(PutParameterCommand).resolves({});
    await backend({ tokenTransport: "ssm" }).provision(request());
    const [put] = ssmMock.commandCalls(PutParameterCommand);
    expect(put!.args[0].input).toMatchObject({ Name: "/flame-ts/thumbs-1-abc123", Type: "SecureString" });
    expect(decodeRunnerEnv(put!.args[0].input.Value!).token).toBe(TOKEN);
    const script = userDataOf(runInputs()[0]!);
    expect(script).toContain("flame_parameter='/flame-ts/thumbs-1-abc123'");
    expect(script).toContain("--region 'eu-west-1'");
    expect(script).not.toContain(TOKEN);
    expect(script).not.toContain(put!.args[0].input.Value!);
  });

  it("deletes the parameter when the launch fails, and on terminate (already gone is fine)", async () => {
    ec2Mock.on(RunInstancesCommand).rejects(awsError("InvalidSubnetID.NotFound"));
    ssmMock.on(PutParameterCommand).resolves({});
    ssmMock.on(DeleteParameterCommand).resolvesOnce({}).rejects(new SSMServiceException({ name: "ParameterNotFound", $fault: "client", $metadata: {}, message: "gone" }));
    const ec2Backend = backend({ tokenTransport: "ssm" });
    await expect(ec2Backend.provision(request())).rejects.toMatchObject({ retryable: false });
    expect(ssmMock.commandCalls(DeleteParameterCommand).map((call) => call.args[0].input.Name)).toEqual(["/flame-ts/thumbs-1-abc123"]);

    ec2Mock.on(TerminateInstancesCommand).resolves({});
    await ec2Backend.terminate({ runnerId: "thumbs-1-abc123", providerId: "i-0aaaaaaaaaaaaaaa1" });
    expect(ssmMock.commandCalls(DeleteParameterCommand)).toHaveLength(2);
  });
});

describe("Ec2Backend terminate, list, permissions, instance watch", () => {
  it("terminate counts an unknown instance as gone, and reports a refusal", async () => {
    ec2Mock.on(TerminateInstancesCommand).rejectsOnce(awsError("InvalidInstanceID.NotFound")).rejects(awsError("UnauthorizedOperation"));
    const ec2Backend = backend();
    await expect(ec2Backend.terminate({ runnerId: "r", providerId: "i-0aaaaaaaaaaaaaaa1" })).resolves.toBeUndefined();
    await expect(ec2Backend.terminate({ runnerId: "r", providerId: "i-0aaaaaaaaaaaaaaa1" })).rejects.toMatchObject({
      code: "FLAME_EC2_UNAUTHORIZED",
    });
  });

  it("lists by tag across pages, living instances only", async () => {
    const instance = (id: string, runner: string, state: string) => ({
      InstanceId: id,
      State: { Name: state as "running" },
      Tags: [
        { Key: "flame:pool", Value: "thumbs" },
        { Key: "flame:parent", Value: "parent-1" },
        { Key: "flame:runner", Value: runner },
      ],
    });
    ec2Mock
      .on(DescribeInstancesCommand)
      .resolvesOnce({ Reservations: [{ Instances: [instance("i-01", "thumbs-1-a", "running")] }], NextToken: "page-2" })
      .resolvesOnce({ Reservations: [{ Instances: [instance("i-02", "thumbs-2-b", "pending")] }] });
    const listed = await backend({ tags: { app: "thumbs" } }).list({ pool: "thumbs" });
    expect(listed).toEqual([
      { runnerId: "thumbs-1-a", providerId: "i-01", pool: "thumbs", parentId: "parent-1", state: "running" },
      { runnerId: "thumbs-2-b", providerId: "i-02", pool: "thumbs", parentId: "parent-1", state: "pending" },
    ]);
    const calls = ec2Mock.commandCalls(DescribeInstancesCommand).map((call) => call.args[0].input);
    expect(calls[1]!.NextToken).toBe("page-2");
    expect(calls[0]!.Filters).toEqual(
      expect.arrayContaining([
        { Name: "tag-key", Values: ["flame:runner"] },
        { Name: "tag:flame:pool", Values: ["thumbs"] },
        { Name: "tag:app", Values: ["thumbs"] },
        { Name: "instance-state-name", Values: ["pending", "running", "stopping", "stopped"] },
      ]),
    );
  });

  it("checkPermissions dry-runs the launch: DryRunOperation means allowed", async () => {
    ec2Mock.on(RunInstancesCommand).rejects(awsError("DryRunOperation"));
    ec2Mock.on(DescribeInstancesCommand).rejects(awsError("DryRunOperation"));
    await expect(backend({ tags: { app: "x" } }).checkPermissions()).resolves.toBeUndefined();
    expect(runInputs()[0]).toMatchObject({ DryRun: true, TagSpecifications: expect.any(Array) });

    ec2Mock.on(RunInstancesCommand).rejects(awsError("UnauthorizedOperation"));
    await expect(backend().checkPermissions()).rejects.toMatchObject({
      retryable: false,
      code: "FLAME_EC2_UNAUTHORIZED",
      message: expect.stringContaining("RunInstances (dry run) failed with UnauthorizedOperation"),
    });
  });

  it("reports a booting runner's instance that ended, with EC2's reason", async () => {
    ec2Mock.on(RunInstancesCommand).resolves(launched);
    ec2Mock.on(DescribeInstancesCommand).resolves({
      Reservations: [
        {
          Instances: [
            { InstanceId: "i-0aaaaaaaaaaaaaaa1", State: { Name: "terminated" }, StateReason: { Message: "Server.SpotInstanceTermination: Spot instance termination" } },
          ],
        },
      ],
    });
    const runner = await backend({ statusPollInterval: 10 }).provision(request());
    await expect(runner.exited).resolves.toBe(
      "EC2 instance i-0aaaaaaaaaaaaaaa1 is terminated (Server.SpotInstanceTermination: Spot instance termination)",
    );
    expect(ec2Mock.commandCalls(DescribeInstancesCommand)[0]!.args[0].input.Filters).toEqual([
      { Name: "instance-id", Values: ["i-0aaaaaaaaaaaaaaa1"] },
    ]);
  });
});
