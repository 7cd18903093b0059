/**
 * A minimal client for AWS query-protocol APIs (CloudFormation, IAM) against
 * moto: the infra tests deploy the CloudFormation template and read back the
 * policies it created, and the AWS SDK clients for those services are not
 * dependencies of this project. moto checks no signature; the credential
 * scope names the service.
 */

export interface StackDescription {
  status: string;
  reason: string | undefined;
  outputs: Record<string, string>;
}

/** A policy document as IAM stores it. */
export interface PolicyDocument {
  Version: string;
  Statement: Array<{
    Sid?: string;
    Effect: string;
    Action: string | string[];
    Resource: string | string[];
    Condition?: Record<string, Record<string, string | string[]>>;
  }>;
}

export class AwsQueryClient {
  constructor(
    private readonly endpoint: string,
    private readonly region: string,
    private readonly accessKeyId: string,
  ) {}

  async createStack(input: { name: string; template: string; parameters: Record<string, string>; capabilities?: string[] }): Promise<void> {
    const params: Record<string, string> = { StackName: input.name, TemplateBody: input.template };
    Object.entries(input.parameters).forEach(([key, value], index) => {
      params[`Parameters.member.${index + 1}.ParameterKey`] = key;
      params[`Parameters.member.${index + 1}.ParameterValue`] = value;
    });
    (input.capabilities ?? []).forEach((capability, index) => (params[`Capabilities.member.${index + 1}`] = capability));
    await this.call("cloudformation", "2010-05-15", "CreateStack", params);
  }

  async describeStack(name: string): Promise<StackDescription> {
    const xml = await this.call("cloudformation", "2010-05-15", "DescribeStacks", { StackName: name });
    const outputs: Record<string, string> = {};
    for (const match of xml.matchAll(/<OutputKey>([^<]*)<\/OutputKey>\s*<OutputValue>([^<]*)<\/OutputValue>/g)) outputs[match[1]!] = unescapeXml(match[2]!);
    const reason = /<StackStatusReason>([^<]*)<\/StackStatusReason>/.exec(xml)?.[1];
    return { status: /<StackStatus>([^<]*)<\/StackStatus>/.exec(xml)?.[1] ?? "UNKNOWN", reason: reason && unescapeXml(reason), outputs };
  }

  /** The default version's document of a managed policy. */
  async managedPolicyDocument(policyArn: string): Promise<PolicyDocument> {
    const policy = await this.call("iam", "2010-05-08", "GetPolicy", { PolicyArn: policyArn });
    const versionId = /<DefaultVersionId>([^<]*)<\/DefaultVersionId>/.exec(policy)?.[1];
    if (!versionId) throw new Error(`IAM GetPolicy ${policyArn}: no default version`);
    const version = await this.call("iam", "2010-05-08", "GetPolicyVersion", { PolicyArn: policyArn, VersionId: versionId });
    return parseDocument(/<Document>([^<]*)<\/Document>/.exec(version)?.[1]);
  }

  /** The names of a role's inline policies. */
  async rolePolicyNames(roleName: string): Promise<string[]> {
    const xml = await this.call("iam", "2010-05-08", "ListRolePolicies", { RoleName: roleName });
    return [...xml.matchAll(/<member>([^<]*)<\/member>/g)].map((match) => match[1]!);
  }

  /** The role names of an instance profile. */
  async instanceProfileRoles(profileName: string): Promise<string[]> {
    const xml = await this.call("iam", "2010-05-08", "GetInstanceProfile", { InstanceProfileName: profileName });
    return [...xml.matchAll(/<RoleName>([^<]*)<\/RoleName>/g)].map((match) => match[1]!);
  }

  private async call(service: string, version: string, action: string, params: Record<string, string>): Promise<string> {
    const date = new Date().toISOString().replace(/[-:]/g, "").slice(0, 8);
    const response = await fetch(this.endpoint, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded; charset=utf-8",
        authorization: `AWS4-HMAC-SHA256 Credential=${this.accessKeyId}/${date}/${this.region}/${service}/aws4_request, SignedHeaders=host, Signature=0`,
      },
      body: new URLSearchParams({ Action: action, Version: version, ...params }).toString(),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${service} ${action} answered ${response.status}: ${text.slice(0, 2_000)}`);
    return text;
  }
}

/** IAM returns documents URL-encoded inside XML (moto sometimes plain). */
function parseDocument(raw: string | undefined): PolicyDocument {
  if (raw === undefined) throw new Error("IAM answered without a policy document");
  const text = unescapeXml(raw);
  return JSON.parse(text.trimStart().startsWith("{") ? text : decodeURIComponent(text)) as PolicyDocument;
}

function unescapeXml(text: string): string {
  return text.replaceAll("&quot;", '"').replaceAll("&apos;", "'").replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&");
}
