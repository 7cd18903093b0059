/**
 * infra/aws/runner-stack.json: the CloudFormation template of the EC2 backend's
 * security groups, runner role and parent policy.
 *
 * Statically: it parses, every reference resolves, its defaults are
 * Ec2Backend's, and cfn-lint (where installed) finds nothing. Against moto:
 * the stack deploys, and the backend, configured from the stack's outputs,
 * runs pools through every code path that calls AWS (permission check, AMI
 * parameter lookup, launch with user-data and ssm token transports, with an
 * instance profile and with the stack's launch template, on demand and spot,
 * watch, list, terminate) while every request its SDK clients send is
 * recorded. Then: every action the backend issued (plus the ones IAM
 * authorizes implicitly: tags at launch, passing the role, tags on the
 * parameter) is allowed by the deployed parent policy, on the resource and
 * with the conditions of the real request, and the policy names no other
 * action; the runner role allows exactly what the runners' boot scripts do.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  CreateSecurityGroupCommand,
  DescribeLaunchTemplateVersionsCommand,
  DescribeSecurityGroupsCommand,
  DescribeVpcsCommand,
  EC2Client,
  type RunInstancesCommandInput,
} from "@aws-sdk/client-ec2";
import { SSMClient } from "@aws-sdk/client-ssm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ec2Backend, type Ec2BackendOptions } from "../../src/backends/ec2.js";
import { DEFAULT_CONTROL_PLANE_PORT, DEFAULT_IMAGE_PARAMETER, resolveEc2Options } from "../../src/backends/ec2/options.js";
import { ecrRegistry } from "../../src/backends/ec2/user-data.js";
import { makePool } from "../fixtures/app.js";
import { Ec2Hypervisor, waitForNoMachines } from "../support/ec2-hypervisor.js";
import { MOTO_CREDENTIALS, MOTO_INSTALL_HINT, MOTO_REGION, motoAvailability, REQUIRE_MOTO_VAR, startMoto, testEc2Backend, type MotoServer } from "../support/moto.js";
import { environmentForFile } from "../support/environment.js";
import { onPath } from "../support/processes.js";
import { AwsQueryClient, type PolicyDocument } from "./aws-query.js";
import { allowingStatements, policyActions, type AuthorizationRequest } from "./iam.js";
import { REPO } from "./image-layout.js";

const TEMPLATE_PATH = join(REPO, "infra/aws/runner-stack.json");
const templateText = readFileSync(TEMPLATE_PATH, "utf8");

interface Template {
  Parameters: Record<string, { Type: string; Default?: string | number; AllowedPattern?: string }>;
  Conditions?: Record<string, unknown>;
  Resources: Record<string, { Type: string; Properties: Record<string, any> }>;
  Outputs: Record<string, { Value: unknown }>;
}

describe("the CloudFormation template", () => {
  const template = JSON.parse(templateText) as Template;

  it("parses, and every Ref, GetAtt, Sub variable and condition names something it defines", () => {
    expect(template).toMatchObject({ AWSTemplateFormatVersion: "2010-09-09" });
    const names = new Set([...Object.keys(template.Parameters), ...Object.keys(template.Resources), "AWS::Partition", "AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::NoValue"]);
    const problems: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (Array.isArray(node)) return node.forEach((child, index) => walk(child, `${path}[${index}]`));
      if (node === null || typeof node !== "object") return;
      for (const [key, value] of Object.entries(node)) {
        if (key === "Ref" && !names.has(value as string)) problems.push(`${path}: Ref ${String(value)}`);
        if (key === "Fn::GetAtt" && !(((value as string[])[0] ?? "") in template.Resources)) problems.push(`${path}: GetAtt ${String(value)}`);
        if (key === "Fn::Sub") {
          for (const match of (value as string).matchAll(/\$\{([^}]+)\}/g)) if (!names.has(match[1]!)) problems.push(`${path}: Sub \${${match[1]}}`);
        }
        if (key === "Fn::If" && !((value as string[])[0]! in (template.Conditions ?? {}))) problems.push(`${path}: If ${String(value)}`);
        walk(value, `${path}.${key}`);
      }
    };
    walk(template.Resources, "Resources");
    walk(template.Outputs, "Outputs");
    walk(template.Conditions, "Conditions");
    expect(problems).toEqual([]);
  });

  it("has Ec2Backend's defaults, and outputs for each option it configures", () => {
    const defaults = resolveEc2Options({ runnerImage: "x" });
    expect(template.Parameters.ListenPort!.Default).toBe(defaults.controlPlane.port);
    expect(defaults.controlPlane.port).toBe(DEFAULT_CONTROL_PLANE_PORT);
    expect(template.Parameters.ParameterPrefix!.Default).toBe(defaults.ssmParameterPrefix);
    expect(defaults.ssmParameterPrefix).toMatch(new RegExp(template.Parameters.ParameterPrefix!.AllowedPattern!));
    // The AMI parameter the backend reads by default is one the parent may read.
    expect(`/${template.Parameters.AmiParameterPath!.Default}`.replace(/\*$/, "")).toBe(DEFAULT_IMAGE_PARAMETER.slice(0, DEFAULT_IMAGE_PARAMETER.lastIndexOf("/") + 1));
    expect(Object.keys(template.Outputs).sort()).toEqual(
      ["LaunchTemplateId", "ListenPort", "ParameterPrefix", "ParentPolicyArn", "RunnerInstanceProfileArn", "RunnerInstanceProfileName", "RunnerRoleArn", "RunnerSecurityGroupId"].sort(),
    );
  });

  it("opens the parent's listen port to the runners' group only, and passes the runner role only", () => {
    const ingress = template.Resources.ParentIngressFromRunners!;
    expect(ingress).toMatchObject({
      Type: "AWS::EC2::SecurityGroupIngress",
      Properties: {
        GroupId: { Ref: "ParentSecurityGroupId" },
        IpProtocol: "tcp",
        FromPort: { Ref: "ListenPort" },
        ToPort: { Ref: "ListenPort" },
        SourceSecurityGroupId: { "Fn::GetAtt": ["RunnerSecurityGroup", "GroupId"] },
      },
    });
    expect(ingress.Properties.CidrIp).toBeUndefined();
    expect(template.Resources.RunnerSecurityGroup!.Properties.SecurityGroupIngress).toBeUndefined();
    const parentPolicy = template.Resources.ParentPolicy!.Properties.PolicyDocument as PolicyDocument;
    const passRole = parentPolicy.Statement.filter((statement) => [statement.Action].flat().some((action) => action.startsWith("iam:")));
    expect(passRole).toEqual([expect.objectContaining({ Action: "iam:PassRole", Resource: { "Fn::GetAtt": ["RunnerRole", "Arn"] } })]);
    // No wildcard actions anywhere.
    const runnerPolicies = template.Resources.RunnerRole!.Properties.Policies as Array<{ PolicyDocument: PolicyDocument }>;
    for (const policy of [parentPolicy, ...runnerPolicies.map((entry) => entry.PolicyDocument)]) {
      for (const action of policyActions(policy)) expect(action).toMatch(/^[a-z0-9]+:[A-Za-z]+$/);
    }
    expect(template.Resources.RunnerInstanceProfile!.Properties.Roles).toEqual([{ Ref: "RunnerRole" }]);
  });

  it.skipIf(!onPath("cfn-lint"))("passes cfn-lint (skipped where it is not installed: pip install cfn-lint)", () => {
    const result = spawnSync("cfn-lint", [TEMPLATE_PATH], { encoding: "utf8", timeout: 120_000 });
    expect(result.stdout + result.stderr).toBe("");
    expect(result.status).toBe(0);
  }, 130_000);
});

// ---- against moto ----------------------------------------------------------

const moto = motoAvailability();
const motoRequired = process.env[REQUIRE_MOTO_VAR] === "1";
if (!moto.available && !motoRequired) {
  console.warn(`Skipping the IAM policy test against moto: ${moto.reason} (${REQUIRE_MOTO_VAR}=1 makes this a failure)`);
}

/** moto's account. */
const ACCOUNT = "123456789012";
const REGION = MOTO_REGION;
/** The parent's credentials: requests signed with them are the backend's (the test hypervisor and this test sign with others). */
const PARENT_CREDENTIALS = { accessKeyId: "AKIAFLAMEPARENTPOLICY", secretAccessKey: "parent-secret" } as const;
const RUNNER_IMAGE = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/flame-test:1`;
const BUILD_ID = "aws-policy-test";

/** One SDK request of the backend. */
interface RecordedCall {
  service: "ec2" | "ssm";
  operation: string;
  input: any;
  /** The answer, when there was one. */
  output: any;
}

/**
 * Records every request the backend's AWS clients send. The backend creates
 * its clients itself, from the same @aws-sdk modules this test imports, so the
 * clients' shared `send` is wrapped; requests signed with other credentials
 * (the test hypervisor's) are not the backend's and are left out.
 */
function recordBackendCalls(): { calls: RecordedCall[]; restore(): void } {
  const calls: RecordedCall[] = [];
  const restores = ([[EC2Client, "ec2"], [SSMClient, "ssm"]] as const).map(([Client, service]) => {
    const prototype = Client.prototype as unknown as { send: (...args: unknown[]) => Promise<unknown> };
    const own = Object.prototype.hasOwnProperty.call(prototype, "send");
    const original = prototype.send;
    prototype.send = async function (this: { config: { credentials(): Promise<{ accessKeyId: string }> } }, ...args: unknown[]) {
      const identity = await this.config.credentials();
      const command = args[0] as { constructor: { name: string }; input: unknown };
      if (identity.accessKeyId !== PARENT_CREDENTIALS.accessKeyId) return original.apply(this, args);
      const call: RecordedCall = { service, operation: command.constructor.name.replace(/Command$/, ""), input: command.input, output: undefined };
      calls.push(call);
      call.output = await original.apply(this, args);
      return call.output;
    };
    return () => {
      if (own) prototype.send = original;
      else delete (prototype as { send?: unknown }).send;
    };
  });
  return { calls, restore: () => restores.forEach((restore) => restore()) };
}

describe.skipIf(!moto.available && !motoRequired)("the IAM policies against the backend's real requests (moto)", () => {
  if (!moto.available) {
    it("needs moto", () => {
      throw new Error(`${moto.reason}; ${REQUIRE_MOTO_VAR}=1 requires this test to run (${MOTO_INSTALL_HINT})`);
    });
    return;
  }

  let server: MotoServer;
  let ec2: EC2Client;
  let query: AwsQueryClient;
  // Parent and runners must agree on the app version: the backend passes the parent's build id to runners.
  environmentForFile({ FLAME_BUILD_ID: BUILD_ID, FLY_IMAGE_REF: undefined });

  beforeAll(async () => {
    server = await startMoto();
    ec2 = new EC2Client({ region: REGION, endpoint: server.endpoint, credentials: MOTO_CREDENTIALS });
    query = new AwsQueryClient(server.endpoint, REGION, MOTO_CREDENTIALS.accessKeyId);
  });

  afterAll(async () => {
    await server?.stop();
  });

  /** Deploys the template with a VPC and a parent security group; returns the outputs. */
  async function deployStack(): Promise<{ outputs: Record<string, string>; parentGroupId: string }> {
    const vpcId = (await ec2.send(new DescribeVpcsCommand({}))).Vpcs![0]!.VpcId!;
    const parent = await ec2.send(new CreateSecurityGroupCommand({ GroupName: "flame-parent", Description: "the parent", VpcId: vpcId }));
    await query.createStack({
      name: "flame-runners",
      template: templateText,
      parameters: { VpcId: vpcId, ParentSecurityGroupId: parent.GroupId! },
      capabilities: ["CAPABILITY_IAM"],
    });
    const stack = await query.describeStack("flame-runners");
    expect(stack, stack.reason).toMatchObject({ status: "CREATE_COMPLETE" });
    return { outputs: stack.outputs, parentGroupId: parent.GroupId! };
  }

  function backend(options: Partial<Ec2BackendOptions>): Ec2Backend {
    return testEc2Backend(server.endpoint, { runnerImage: RUNNER_IMAGE, region: REGION, credentials: PARENT_CREDENTIALS }, options);
  }

  /** Runs a pool through start (permission check), one call (launch, watch), reap (list) and stop (terminate). */
  async function exercise(name: string, options: Partial<Ec2BackendOptions>): Promise<void> {
    const { pool, whoami } = makePool({ name, max: 1, bootTimeout: 20_000, backend: backend(options) });
    try {
      await pool.start();
      const { isRunner: ranOnRunner } = await whoami();
      expect(ranOnRunner).toBe(true);
      expect(await pool.reap()).toEqual([]);
    } finally {
      await pool.stop();
    }
  }

  it("the stack's outputs configure the backend, whose every request the parent policy allows, and nothing else", async () => {
    const { outputs, parentGroupId } = await deployStack();

    // The ingress rule as deployed: the listen port, from the runners' group.
    const parentGroup = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [parentGroupId] }))).SecurityGroups![0]!;
    expect(parentGroup.IpPermissions).toEqual([
      expect.objectContaining({ IpProtocol: "tcp", FromPort: DEFAULT_CONTROL_PLANE_PORT, ToPort: DEFAULT_CONTROL_PLANE_PORT, UserIdGroupPairs: [expect.objectContaining({ GroupId: outputs.RunnerSecurityGroupId })] }),
    ]);

    const machines = Ec2Hypervisor.start({ endpoint: server.endpoint });
    const recorder = recordBackendCalls();
    try {
      // The instance profile and group by option, the AMI from the default public parameter, the token in user data.
      await exercise("policy-user-data", {
        iamInstanceProfile: outputs.RunnerInstanceProfileName,
        securityGroupIds: [outputs.RunnerSecurityGroupId!],
      });
      // The stack's launch template (profile and group inside), spot, the token in an SSM parameter.
      await exercise("policy-ssm", {
        launchTemplate: { id: outputs.LaunchTemplateId! },
        imageParameter: DEFAULT_IMAGE_PARAMETER,
        tokenTransport: "ssm",
        ssmParameterPrefix: outputs.ParameterPrefix!,
        spot: true,
      });
      await waitForNoMachines(machines);
    } finally {
      recorder.restore();
      await machines.stop();
    }
    const calls = recorder.calls;
    const operations = new Set(calls.map((call) => `${call.service}:${call.operation}`));
    // Every path that calls AWS was taken.
    expect([...operations].sort()).toEqual(
      ["ec2:DescribeInstances", "ec2:RunInstances", "ec2:TerminateInstances", "ssm:DeleteParameter", "ssm:GetParameter", "ssm:PutParameter"].sort(),
    );
    expect(calls.some((call) => call.operation === "RunInstances" && call.input.DryRun)).toBe(true);
    expect(calls.some((call) => call.operation === "DescribeInstances" && call.input.DryRun)).toBe(true);

    // What IAM authorizes for each request, with its resource and condition keys.
    const launchTemplateProfile = async (id: string) => {
      const versions = await ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateId: id, Versions: ["$Default"] }));
      return versions.LaunchTemplateVersions![0]!.LaunchTemplateData!.IamInstanceProfile?.Arn;
    };
    const roleOfProfile = async (profile: string) => {
      const name = profile.startsWith("arn:") ? profile.slice(profile.lastIndexOf("/") + 1) : profile;
      const [role] = await query.instanceProfileRoles(name);
      return `arn:aws:iam::${ACCOUNT}:role/${role}`;
    };
    const parameterArn = (name: string) =>
      name.startsWith("/aws/service/") ? `arn:aws:ssm:${REGION}::parameter${name}` : `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter${name}`;
    const launchedTags = new Map<string, Record<string, string>>();
    const requests: AuthorizationRequest[] = [];
    for (const call of calls) {
      const action = `${call.service}:${call.operation}`;
      if (call.operation === "RunInstances") {
        const input = call.input as RunInstancesCommandInput;
        requests.push({ action, resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/*` });
        for (const specification of input.TagSpecifications ?? []) {
          requests.push({ action: "ec2:CreateTags", resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:${specification.ResourceType}/*`, context: { "ec2:CreateAction": "RunInstances" } });
        }
        const profile = input.IamInstanceProfile?.Name ?? input.IamInstanceProfile?.Arn ?? (input.LaunchTemplate?.LaunchTemplateId ? await launchTemplateProfile(input.LaunchTemplate.LaunchTemplateId) : undefined);
        if (profile) requests.push({ action: "iam:PassRole", resource: await roleOfProfile(profile), context: { "iam:PassedToService": "ec2.amazonaws.com" } });
        const instanceTags = input.TagSpecifications?.find((specification) => specification.ResourceType === "instance")?.Tags ?? [];
        const instanceId = call.output?.Instances?.[0]?.InstanceId as string | undefined;
        if (instanceId) launchedTags.set(instanceId, Object.fromEntries(instanceTags.map((tag) => [tag.Key!, tag.Value!])));
      } else if (call.operation === "TerminateInstances") {
        // The condition key IAM evaluates: the instance's flame:runner tag, which it has had since its launch.
        for (const id of call.input.InstanceIds as string[]) {
          const tag = launchedTags.get(id)?.["flame:runner"];
          requests.push({ action, resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/${id}`, context: tag === undefined ? {} : { "ec2:ResourceTag/flame:runner": tag } });
        }
      } else if (call.operation === "DescribeInstances") {
        requests.push({ action, resource: "*" });
      } else if (call.service === "ssm") {
        requests.push({ action, resource: parameterArn(call.input.Name) });
        if (call.operation === "PutParameter" && call.input.Tags?.length) requests.push({ action: "ssm:AddTagsToResource", resource: parameterArn(call.input.Name) });
      } else {
        throw new Error(`no IAM mapping for ${action}`);
      }
    }

    const parentPolicy = await query.managedPolicyDocument(outputs.ParentPolicyArn!);
    const denied = requests.filter((request) => allowingStatements(parentPolicy, request).length === 0);
    expect(denied).toEqual([]);
    // Nothing beyond: the policy's actions are exactly those requested, and every statement is used.
    expect(policyActions(parentPolicy)).toEqual([...new Set(requests.map((request) => request.action))].sort());
    const used = new Set(requests.flatMap((request) => allowingStatements(parentPolicy, request)));
    expect([...used].sort()).toEqual(parentPolicy.Statement.map((statement) => statement.Sid).sort());
    // PassRole names the runner role, and no other.
    expect(parentPolicy.Statement.find((statement) => statement.Action === "iam:PassRole")?.Resource).toBe(outputs.RunnerRoleArn);
    // A request the backend does not make is refused: terminating an instance that is not a runner.
    expect(allowingStatements(parentPolicy, { action: "ec2:TerminateInstances", resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/i-0123`, context: {} })).toEqual([]);

    // ---- the runners' side: what the boot scripts do, against the runner role.
    const scripts = calls
      .filter((call) => call.operation === "RunInstances" && !call.input.DryRun)
      .map((call) => Buffer.from((call.input as RunInstancesCommandInput).UserData!, "base64").toString("utf8"));
    expect(scripts.length).toBe(2);
    const runnerRequests = scripts.flatMap((script) => runnerRequestsOf(script));
    // moto answers GetRolePolicy for a role made by CloudFormation with a Python repr, not JSON: the runner
    // policy is the template's, resolved with the stack's values (checked against the parent policy moto made).
    const template = JSON.parse(templateText) as Template;
    const values: Record<string, string> = {
      "AWS::Partition": "aws",
      "AWS::Region": REGION,
      "AWS::AccountId": ACCOUNT,
      ...Object.fromEntries(Object.entries(template.Parameters).map(([name, parameter]) => [name, String(parameter.Default ?? "")])),
      "RunnerRole.Arn": outputs.RunnerRoleArn!,
    };
    expect(resolveIntrinsics(template.Resources.ParentPolicy!.Properties.PolicyDocument, values)).toEqual(parentPolicy);
    const [runnerInline] = template.Resources.RunnerRole!.Properties.Policies as Array<{ PolicyName: string; PolicyDocument: unknown }>;
    const roleName = outputs.RunnerRoleArn!.slice(outputs.RunnerRoleArn!.lastIndexOf("/") + 1);
    expect(await query.rolePolicyNames(roleName)).toEqual([runnerInline!.PolicyName]);
    const runnerPolicy = resolveIntrinsics(runnerInline!.PolicyDocument, values) as PolicyDocument;
    expect(runnerRequests.filter((request) => allowingStatements(runnerPolicy, request).length === 0)).toEqual([]);
    expect(policyActions(runnerPolicy)).toEqual([...new Set(runnerRequests.map((request) => request.action))].sort());
    // No EC2 permission at all: a runner ends its instance by powering off.
    expect(policyActions(runnerPolicy).filter((action) => action.startsWith("ec2:"))).toEqual([]);
  }, 120_000);
});

/** Resolves Ref, Fn::GetAtt ("Resource.Attribute" in `values`) and Fn::Sub in a template fragment. */
function resolveIntrinsics(node: unknown, values: Record<string, string>): unknown {
  const lookup = (name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`no value for ${name}`);
    return value;
  };
  if (Array.isArray(node)) return node.map((child) => resolveIntrinsics(child, values));
  if (node === null || typeof node !== "object") return node;
  const entries = Object.entries(node);
  if (entries.length === 1) {
    const [key, value] = entries[0]!;
    if (key === "Ref") return lookup(value as string);
    if (key === "Fn::GetAtt") return lookup((value as string[]).join("."));
    if (key === "Fn::Sub") return (value as string).replace(/\$\{([^}]+)\}/g, (_match, name: string) => lookup(name));
  }
  return Object.fromEntries(entries.map(([key, value]) => [key, resolveIntrinsics(value, values)]));
}

/**
 * The AWS requests a boot script makes, as IAM authorizes them: its `aws`
 * CLI calls (`aws <service> [--option value...] <operation>`), and the ECR
 * pull of `docker run <ECR image>`.
 */
function runnerRequestsOf(script: string): AuthorizationRequest[] {
  const requests: AuthorizationRequest[] = [];
  const parameter = /^flame_parameter='([^']*)'$/m.exec(script)?.[1];
  // The AWS CLI's own commands that are not API operations.
  const customized: Record<string, string> = { "ecr:get-login-password": "ecr:GetAuthorizationToken" };
  for (const match of script.matchAll(/(?:^|[\s($|;&])aws\s+([a-z0-9-]+)\s+((?:--[a-z-]+\s+(?:'[^']*'|"[^"]*"|\S+)\s+)*)([a-z][a-z0-9-]*)/gm)) {
    const [, service, , operation] = match;
    const action = customized[`${service}:${operation}`] ?? `${service}:${operation!.replace(/(^|-)([a-z])/g, (_all, _dash, letter: string) => letter.toUpperCase())}`;
    const resource = service === "ssm" ? `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter${parameter}` : "*";
    requests.push({ action, resource });
  }
  const image = /docker run .* '([^']+)'$/m.exec(script)?.[1];
  const ecr = image ? ecrRegistry(image) : undefined;
  if (ecr) {
    const repository = image!.slice(ecr.registry.length + 1).replace(/[:@].*$/, "");
    for (const action of ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]) {
      requests.push({ action, resource: `arn:aws:ecr:${ecr.region}:${ACCOUNT}:repository/${repository}` });
    }
  }
  return requests;
}
