/**
 * `flame-ts doctor`: checks a backend's configuration before a deploy: its
 * credentials and permissions (Fly token and app, AWS DryRun), and that the
 * address runners will dial is one this parent can listen on and reach.
 */
import { lookup } from "node:dns/promises";
import { createConnection, createServer, type AddressInfo } from "node:net";
import { networkInterfaces } from "node:os";
import { parseArgs } from "node:util";
import type { Backend } from "../backends/backend.js";
import type { ControlPlaneAddress } from "../control-plane/address.js";
import { LOOPBACK } from "../control-plane/listener.js";
import { resolveTargets, TARGET_USAGE } from "./targets.js";

export const DOCTOR_USAGE = `Usage: flame-ts doctor (--entry <module> | --backend fly|ec2|kubernetes) [--pool <name>]

Checks each backend: credentials and permissions, and that the address runners
will dial is one this parent listens on. Exits 1 if a check fails.

${TARGET_USAGE}
`;

type Check = { ok: boolean; what: string; detail: string };

export async function doctorCommand(argv: string[], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { entry: { type: "string" }, backend: { type: "string" }, pool: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    out.write(DOCTOR_USAGE);
    return 0;
  }
  let failed = 0;
  for (const target of await resolveTargets(values)) {
    out.write(`${target.backend.name} backend${target.pool ? `, pool "${target.pool}"` : ""}\n`);
    for (const check of [await checkPermissions(target.backend), ...(await checkControlPlane(target.backend))]) {
      if (!check.ok) failed += 1;
      out.write(`  ${check.ok ? "ok  " : "FAIL"} ${check.what}: ${check.detail}\n`);
    }
  }
  out.write(failed === 0 ? "all checks passed\n" : `${failed} check(s) failed\n`);
  return failed === 0 ? 0 : 1;
}

async function checkPermissions(backend: Backend): Promise<Check> {
  const what = "credentials and permissions";
  if (!backend.checkPermissions) return { ok: true, what, detail: "nothing to check for this backend" };
  try {
    await backend.checkPermissions();
    return { ok: true, what, detail: "accepted by the provider" };
  } catch (error) {
    return { ok: false, what, detail: (error as Error).message };
  }
}

/** Binds where the parent would, then connects to the URL runners would dial. */
async function checkControlPlane(backend: Backend): Promise<Check[]> {
  let address: ControlPlaneAddress;
  try {
    address = (await backend.controlPlane?.()) ?? LOOPBACK;
  } catch (error) {
    return [{ ok: false, what: "parent address", detail: (error as Error).message }];
  }
  const server = createServer((socket) => socket.end());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: address.host, port: address.port }, resolve);
    });
  } catch (error) {
    const inUse = (error as NodeJS.ErrnoException).code === "EADDRINUSE";
    return [
      {
        ok: false,
        what: "listen",
        detail: `cannot listen on ${address.host}:${address.port}: ${(error as Error).message}${inUse ? " (is a parent already running here?)" : ""}`,
      },
    ];
  }
  try {
    const port = (server.address() as AddressInfo).port;
    const url = new URL(address.advertisedUrl(port));
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const checks: Check[] = [{ ok: true, what: "listen", detail: `${address.host}:${port}` }];
    const resolved = await lookup(host).then((found) => found.address, () => undefined);
    if (!resolved) return [...checks, { ok: false, what: "runner URL", detail: `${url.href}: cannot resolve "${host}"` }];
    const local = isLocalAddress(resolved);
    checks.push({
      ok: local,
      what: "runner URL",
      detail: local
        ? `${url.href} is an address of this machine`
        : `${url.href} resolves to ${resolved}, which is not an address of this machine: runners would dial somewhere else`,
    });
    if (local) checks.push(await connectCheck(resolved, Number(url.port)));
    return checks;
  } finally {
    server.close();
  }
}

function isLocalAddress(address: string): boolean {
  if (address === "127.0.0.1" || address === "::1") return true;
  return Object.values(networkInterfaces()).some((entries) => entries?.some((entry) => entry.address === address));
}

function connectCheck(host: string, port: number): Promise<Check> {
  const what = "reachable";
  return new Promise((resolve) => {
    const socket = createConnection({ host, port, timeout: 3_000 });
    socket.once("connect", () => {
      socket.destroy();
      resolve({ ok: true, what, detail: `connected to ${host}:${port}, where the parent would listen` });
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve({ ok: false, what, detail: `connecting to ${host}:${port} timed out` });
    });
    socket.once("error", (error) => resolve({ ok: false, what, detail: `cannot connect to ${host}:${port}: ${error.message}` }));
  });
}
