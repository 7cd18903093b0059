import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadCredentials } from "../../../src/backends/kubernetes/credentials.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "flame-kube-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

function kubeconfig(user: string, extra = ""): string {
  return `apiVersion: v1
kind: Config
current-context: dev
contexts:
- name: dev
  context: { cluster: c1, user: u1, namespace: jobs }
- name: other
  context: { cluster: c1, user: u1 }
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: ${Buffer.from(CA).toString("base64")}
${extra}users:
- name: u1
  user:
${user}
`;
}

describe("Kubernetes credentials", () => {
  it("read a kubeconfig's server, CA, token and context namespace, never showing the token in their source", async () => {
    const path = join(dir, "config");
    await writeFile(path, kubeconfig("    token: sekret-token"));
    const credentials = await loadCredentials({ kubeconfig: path }, {});
    expect(credentials).toMatchObject({ server: "https://127.0.0.1:6443", ca: CA, namespace: "jobs", insecureSkipTlsVerify: false });
    await expect(credentials.token()).resolves.toBe("sekret-token");
    expect(credentials.source).toContain(path);
    expect(credentials.source).not.toContain("sekret");
    expect((await loadCredentials({ kubeconfig: path, context: "other" }, {})).namespace).toBeUndefined();
    await expect(loadCredentials({ kubeconfig: path, context: "missing" }, {})).rejects.toThrow(/no context "missing"/);
  });

  it("read client certificates from files relative to the kubeconfig", async () => {
    await writeFile(join(dir, "client.crt"), "CERT");
    await writeFile(join(dir, "client.key"), "KEY");
    const path = join(dir, "config");
    await writeFile(path, kubeconfig("    client-certificate: client.crt\n    client-key: client.key"));
    expect((await loadCredentials({ kubeconfig: path }, {})).clientCertificate).toEqual({ cert: "CERT", key: "KEY" });
  });

  it("run an exec credential plugin once and reuse its token until it nears expiry", async () => {
    const plugin = join(dir, "plugin.mjs");
    const calls = join(dir, "calls");
    await writeFile(
      plugin,
      `#!/usr/bin/env node
import { appendFileSync } from "node:fs";
appendFileSync(${JSON.stringify(calls)}, "x");
process.stdout.write(JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", status: { token: "from-plugin-" + process.env.PLUGIN_SUFFIX, expirationTimestamp: new Date(Date.now() + 3600e3).toISOString() } }));
`,
    );
    await chmod(plugin, 0o755);
    const path = join(dir, "config");
    await writeFile(
      path,
      kubeconfig(`    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ${process.execPath}
      args: [${JSON.stringify(plugin)}]
      env: [{ name: PLUGIN_SUFFIX, value: "42" }]`),
    );
    const credentials = await loadCredentials({ kubeconfig: path }, {});
    await expect(credentials.token()).resolves.toBe("from-plugin-42");
    await expect(credentials.token()).resolves.toBe("from-plugin-42");
    const { readFile } = await import("node:fs/promises");
    expect(await readFile(calls, "utf8")).toBe("x");
  });

  it("refuse legacy auth-provider users with the exec replacement named", async () => {
    const path = join(dir, "config");
    await writeFile(path, kubeconfig("    auth-provider: { name: gcp }"));
    await expect(loadCredentials({ kubeconfig: path }, {})).rejects.toThrow(/gke-gcloud-auth-plugin/);
  });

  it("prefer the pod's service account in a cluster, with its namespace and CA", async () => {
    await writeFile(join(dir, "token"), "sa-token\n");
    await writeFile(join(dir, "ca.crt"), CA);
    await writeFile(join(dir, "namespace"), "shop");
    const credentials = await loadCredentials({}, { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" }, dir);
    expect(credentials).toMatchObject({ server: "https://10.96.0.1:443", ca: CA, namespace: "shop" });
    await expect(credentials.token()).resolves.toBe("sa-token");
  });

  it("say where they looked when there are none", async () => {
    await expect(loadCredentials({}, { HOME: dir }, join(dir, "none"))).rejects.toThrow(/no credentials for the Kubernetes API/);
  });
});
