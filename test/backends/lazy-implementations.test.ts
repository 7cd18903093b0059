/**
 * The Fly, EC2 and Kubernetes backends are shells whose implementation is
 * loaded on first use (src/backends/deferred-backend.ts): a runner imports
 * flame-ts and constructs its app's backend on every cold start, and must not
 * evaluate code only a parent runs. A real `node --import tsx` process
 * records, with module hooks, every file it loads (test/fixtures/lazy-backends-app.ts),
 * and the builtins it imports: node:http costs a runner 20 ms on Node 22 and 24.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const repo = fileURLToPath(new URL("../../", import.meta.url));

/** Files of each backend that only its use may load: the implementation and what only it imports. */
const IMPLEMENTATION_FILES = [
  "src/backends/fly/implementation.ts",
  "src/backends/fly/api.ts",
  "src/backends/fly/machines.ts",
  "src/backends/ec2/implementation.ts",
  "src/backends/ec2/user-data.ts",
  "src/backends/ec2/run-instances.ts",
  "src/backends/ec2/instance-watch.ts",
  "src/backends/kubernetes/implementation.ts",
  "src/backends/kubernetes/api.ts",
  "src/backends/kubernetes/pod-watch.ts",
  "src/backends/kubernetes/manifests.ts",
  "src/backends/kubernetes/credentials.ts",
];

interface Report {
  afterConstruction: string[];
  builtinsAfterConstruction: string[];
  afterUse: string[];
  uses: Record<"fly" | "ec2" | "kubernetes", string>;
}

async function runApp(): Promise<Report> {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (/^(FLY_|POD_|KUBECONFIG$|AWS_)/.test(name)) delete env[name];
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "test/fixtures/lazy-backends-app.ts"], {
    cwd: repo,
    env,
    timeout: 20_000,
    killSignal: "SIGKILL",
  });
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as Report;
}

describe("backend implementations are loaded on first use", () => {
  it("importing flame-ts and constructing the backends loads their shells only; using each loads its implementation", async () => {
    const report = await runApp();

    expect(report.afterConstruction).toEqual(
      expect.arrayContaining(["src/index.ts", "src/backends/fly.ts", "src/backends/ec2.ts", "src/backends/kubernetes.ts", "src/backends/fly/api-error.ts"]),
    );
    expect(report.afterConstruction.filter((file) => IMPLEMENTATION_FILES.includes(file))).toEqual([]);
    // Nor is node:http imported (the control plane takes it when it listens): its ESM facade loads Node's undici, 20 ms on Node 22 and 24.
    expect(report.builtinsAfterConstruction).toEqual(expect.arrayContaining(["node:child_process", "node:v8"]));
    expect(report.builtinsAfterConstruction.filter((url) => /^node:https?$/.test(url))).toEqual([]);

    expect(report.uses).toEqual({ fly: "FLAME_FLY_INVALID_CONFIGURATION", ec2: "resolved", kubernetes: expect.any(String) });
    expect(report.afterUse).toEqual(expect.arrayContaining(IMPLEMENTATION_FILES));
  }, 30_000);
});
