/**
 * The `k8s-emulator` command: runs the Kubernetes API emulator in the
 * foreground for local development, writes a kubeconfig for it, and prints
 * how to point kubectl and a parent's KubernetesBackend at it.
 */
import { parseArgs } from "node:util";
import { startKubernetesEmulator, type KubernetesEmulator, type KubernetesEmulatorOptions } from "./emulator.js";

/** Usage text of the command. */
export const K8S_EMULATOR_USAGE = `Usage: flame-ts k8s-emulator [options]

Runs a Kubernetes API emulator on 127.0.0.1; each pod is a local process running
its container's command and args (images are recorded, never pulled).

Options:
  --port <n>          port to listen on (default: any free port)
  --namespace <ns>    the client's namespace, created with "default" (default: default)
  --token <token>     bearer token it accepts (default: a random one, in the kubeconfig)
  --kubeconfig <path> where to write the kubeconfig (default: a new temporary file)
  --no-validate       do not check objects against the Kubernetes schema
                      (no kubernetes-models package needed)
  --no-tls            serve plain HTTP instead of HTTPS with a self-signed certificate
  --quiet             do not copy pods' output to stderr
`;

/** What the command runs: the emulator's options and where to write the kubeconfig. */
export interface K8sEmulatorCommandOptions {
  emulator: KubernetesEmulatorOptions;
  kubeconfig: string | undefined;
}

/** The command's options from its arguments. Throws on unknown or malformed ones. */
export function parseK8sEmulatorArgs(argv: string[]): K8sEmulatorCommandOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      port: { type: "string" },
      namespace: { type: "string" },
      token: { type: "string" },
      kubeconfig: { type: "string" },
      "no-validate": { type: "boolean" },
      "no-tls": { type: "boolean" },
      quiet: { type: "boolean" },
    },
  });
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65_535)) {
    throw new Error(`--port must be a port number, got ${JSON.stringify(values.port)}`);
  }
  return {
    emulator: {
      ...(port !== undefined ? { port } : {}),
      ...(values.namespace ? { namespace: values.namespace } : {}),
      ...(values.token ? { token: values.token } : {}),
      validate: !values["no-validate"],
      tls: !values["no-tls"],
      echoOutput: !values.quiet,
    },
    kubeconfig: values.kubeconfig,
  };
}

/** The lines that point kubectl and a parent at `emulator`; the token stays in the kubeconfig, never printed. */
export function describeK8sEmulator(emulator: KubernetesEmulator, kubeconfig: string): string {
  return [
    `Kubernetes API emulator listening on ${emulator.url} (namespace "${emulator.namespace}")`,
    `Kubeconfig written to ${kubeconfig}. Point kubectl and a parent's KubernetesBackend at it with:`,
    `  export KUBECONFIG=${kubeconfig}`,
    "Then, for example:",
    "  kubectl get pods",
    "Pods run as local processes of this command; Ctrl-C stops it and them.",
    "",
  ].join("\n");
}

/** Runs the command until SIGINT or SIGTERM, then kills every pod and exits. */
export async function runK8sEmulatorCommand(argv: string[]): Promise<KubernetesEmulator> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(K8S_EMULATOR_USAGE);
    process.exit(0);
  }
  const options = parseK8sEmulatorArgs(argv);
  // invokedFrom: a missing kubernetes-models then suggests --no-validate, not the API's validate: false.
  const emulator = await startKubernetesEmulator({ ...options.emulator, invokedFrom: "cli" });
  const kubeconfig = await emulator.writeKubeconfig(options.kubeconfig);
  process.stdout.write(describeK8sEmulator(emulator, kubeconfig));
  const shutdown = () => {
    void emulator.close().then(() => process.exit(0));
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
  return emulator;
}
