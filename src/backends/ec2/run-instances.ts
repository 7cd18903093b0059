/**
 * The RunInstances request of one runner: one instance, its client token, tags
 * on the instance and its volumes, IMDSv2, terminate on power-off, user data,
 * and spot options when asked for.
 */
import { createHash } from "node:crypto";
import type { RunInstancesCommandInput } from "@aws-sdk/client-ec2";
import type { ProvisionRequest } from "../backend.js";
import type { ResolvedEc2Options } from "./options.js";

/** Tags flame-ts puts on every instance, volume and boot parameter it creates. */
export const EC2_TAGS = { pool: "flame:pool", parent: "flame:parent", runner: "flame:runner" } as const;

/** EC2 client tokens are at most 64 ASCII characters. */
const CLIENT_TOKEN_MAX = 64;

type RunnerIdentity = Pick<ProvisionRequest, "runnerId" | "pool" | "parentId">;

/**
 * The client token of a launch attempt: the runner id (hashed when too long),
 * so that a request the SDK retries after a lost answer never launches twice;
 * suffixed after the first attempt, since a failed request's token must not be
 * reused with other parameters (spot fallback).
 */
export function clientToken(runnerId: string, attempt: number): string {
  const suffix = attempt === 1 ? "" : `.${attempt}`;
  const base = runnerId.length + suffix.length <= CLIENT_TOKEN_MAX ? runnerId : createHash("sha256").update(runnerId).digest("hex").slice(0, 48);
  return `${base}${suffix}`;
}

/** The flame tags of a runner, then the user's. */
export function runnerTags(runner: RunnerIdentity, userTags: Record<string, string>): Array<{ Key: string; Value: string }> {
  return [
    { Key: EC2_TAGS.pool, Value: runner.pool },
    { Key: EC2_TAGS.parent, Value: runner.parentId },
    { Key: EC2_TAGS.runner, Value: runner.runnerId },
    ...Object.entries(userTags).map(([Key, Value]) => ({ Key, Value })),
  ];
}

export function runInstancesInput(
  options: ResolvedEc2Options,
  runner: RunnerIdentity,
  imageId: string | undefined,
  userData: string,
  spot: boolean,
  token: string | undefined,
): RunInstancesCommandInput {
  const tags = runnerTags(runner, options.tags);
  const template = options.launchTemplate;
  const profile = options.iamInstanceProfile;
  // A Name for the console, unless the user's tags set one.
  const name = "Name" in options.tags ? [] : [{ Key: "Name", Value: `flame-ts ${runner.runnerId}` }];
  return {
    MinCount: 1,
    MaxCount: 1,
    ...(token !== undefined ? { ClientToken: token } : {}),
    ...(imageId !== undefined ? { ImageId: imageId } : {}),
    ...(options.instanceType !== undefined ? { InstanceType: options.instanceType as RunInstancesCommandInput["InstanceType"] } : {}),
    ...(template
      ? {
          LaunchTemplate: {
            ...(template.id !== undefined ? { LaunchTemplateId: template.id } : { LaunchTemplateName: template.name }),
            ...(template.version !== undefined ? { Version: template.version } : {}),
          },
        }
      : {}),
    ...(options.subnetId !== undefined ? { SubnetId: options.subnetId } : {}),
    ...(options.securityGroupIds !== undefined ? { SecurityGroupIds: options.securityGroupIds } : {}),
    ...(profile !== undefined ? { IamInstanceProfile: profile.startsWith("arn:") ? { Arn: profile } : { Name: profile } } : {}),
    ...(options.keyName !== undefined ? { KeyName: options.keyName } : {}),
    UserData: Buffer.from(userData, "utf8").toString("base64"),
    // The boot script powers off when the runner exits; this makes that the end of the instance.
    InstanceInitiatedShutdownBehavior: "terminate",
    MetadataOptions: { HttpTokens: "required", HttpEndpoint: "enabled" },
    ...(spot
      ? {
          InstanceMarketOptions: {
            MarketType: "spot",
            SpotOptions: {
              SpotInstanceType: "one-time",
              InstanceInterruptionBehavior: "terminate",
              ...(options.spot?.maxPrice !== undefined ? { MaxPrice: options.spot.maxPrice } : {}),
            },
          },
        }
      : {}),
    TagSpecifications: [
      { ResourceType: "instance", Tags: [...name, ...tags] },
      { ResourceType: "volume", Tags: tags },
      ...(spot ? [{ ResourceType: "spot-instances-request" as const, Tags: tags }] : []),
    ],
  };
}
