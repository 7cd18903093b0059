/**
 * The AWS SDK clients of the EC2 backend, loaded on first use: importing
 * flame-ts (as every runner does) must not load the AWS SDK.
 */
import type { EC2Client } from "@aws-sdk/client-ec2";
import type { SSMClient } from "@aws-sdk/client-ssm";
import { BackendError } from "../../errors.js";
import { EC2_ERROR_CODES } from "./errors.js";
import type { ResolvedEc2Options } from "./options.js";

export type Ec2Module = typeof import("@aws-sdk/client-ec2");
export type SsmModule = typeof import("@aws-sdk/client-ssm");

export interface AwsClients {
  ec2: EC2Client;
  ssm: SSMClient;
  sdk: { ec2: Ec2Module; ssm: SsmModule };
  /** The region the clients talk to (resolved through the SDK when not configured). */
  region: string;
}

/** Creates the clients once; later calls share them. */
export async function createClients(options: ResolvedEc2Options): Promise<AwsClients> {
  const [ec2Module, ssmModule] = await Promise.all([
    importOrExplain<Ec2Module>("@aws-sdk/client-ec2", () => import("@aws-sdk/client-ec2")),
    importOrExplain<SsmModule>("@aws-sdk/client-ssm", () => import("@aws-sdk/client-ssm")),
  ]);
  const config = {
    ...(options.region !== undefined ? { region: options.region } : {}),
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
  };
  const ec2 = new ec2Module.EC2Client(config);
  const ssm = new ssmModule.SSMClient(config);
  let region: string;
  try {
    region = await ec2.config.region();
  } catch (error) {
    throw new BackendError(`no AWS region: set the Ec2Backend "region" option or AWS_REGION (${(error as Error).message})`, {
      retryable: false,
      cause: error,
      code: EC2_ERROR_CODES.invalidConfiguration,
    });
  }
  return { ec2, ssm, sdk: { ec2: ec2Module, ssm: ssmModule }, region };
}

async function importOrExplain<T>(name: string, load: () => Promise<unknown>): Promise<T> {
  try {
    return (await load()) as T;
  } catch (error) {
    throw new BackendError(`the EC2 backend needs the package ${name}: npm install ${name}@3 (${(error as Error).message})`, {
      retryable: false,
      cause: error,
      code: EC2_ERROR_CODES.invalidConfiguration,
    });
  }
}
