/** Helpers for tests against the Kubernetes API emulator: start one, talk to it, follow its watches. */
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { startKubernetesEmulator, type KubernetesEmulator, type KubernetesEmulatorOptions } from "../../src/emulators/kubernetes/emulator.js";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** An emulator whose pods run in the repository's root (so `node --import tsx ...` finds tsx). */
export function startTestKubernetesEmulator(options: KubernetesEmulatorOptions = {}): Promise<KubernetesEmulator> {
  return startKubernetesEmulator({ cwd: REPO_ROOT, ...options });
}

const agents = new WeakMap<KubernetesEmulator, Agent>();

/** An undici dispatcher that trusts the emulator's certificate. */
export function dispatcherFor(emulator: KubernetesEmulator): Agent {
  let agent = agents.get(emulator);
  if (!agent) {
    agent = new Agent({ connect: emulator.caCertificate ? { ca: emulator.caCertificate } : {} });
    agents.set(emulator, agent);
  }
  return agent;
}

/** A JSON answer of the emulator. */
export interface KubernetesAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** Sends one request with the emulator's token (or `token`), JSON in and out (text for non-JSON answers). */
export async function kubernetesRequest(
  emulator: KubernetesEmulator,
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
  path: string,
  body?: unknown,
  options: { contentType?: string; token?: string | null; accept?: string } = {},
): Promise<KubernetesAnswer> {
  const headers: Record<string, string> = { accept: options.accept ?? "application/json" };
  if (options.token !== null) headers.authorization = `Bearer ${options.token ?? emulator.token}`;
  if (body !== undefined) headers["content-type"] = options.contentType ?? "application/json";
  const answer = await request(`${emulator.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    dispatcher: dispatcherFor(emulator),
  });
  const text = await answer.body.text();
  const type = String(answer.headers["content-type"] ?? "");
  return { status: answer.statusCode, headers: answer.headers, body: type.includes("json") && text ? JSON.parse(text) : text };
}

/** One watch event. */
export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: any;
}

/** An open watch: its events so far, a way to wait for one, and how it ended. */
export interface OpenWatch {
  events: WatchEvent[];
  /** Resolves with the first event (already received or to come) that `predicate` accepts; rejects after `timeout` ms or when the stream ends first. */
  next(predicate: (event: WatchEvent) => boolean, timeout?: number): Promise<WatchEvent>;
  /** Resolves when the stream ends: "end" (the server finished it) or "error" (it broke). */
  ended: Promise<"end" | "error">;
  close(): void;
}

/** Opens a watch at `path` (which includes `watch=1` and any selectors). */
export async function openWatch(emulator: KubernetesEmulator, path: string): Promise<OpenWatch> {
  const controller = new AbortController();
  const answer = await request(`${emulator.url}${path}`, {
    headers: { authorization: `Bearer ${emulator.token}`, accept: "application/json" },
    dispatcher: dispatcherFor(emulator),
    signal: controller.signal,
  });
  if (answer.statusCode !== 200) throw new Error(`watch answered ${answer.statusCode}: ${await answer.body.text()}`);
  const events: WatchEvent[] = [];
  const waiters = new Set<() => void>();
  let buffered = "";
  let finished: "end" | "error" | undefined;
  const ended = new Promise<"end" | "error">((resolve) => {
    answer.body.setEncoding("utf8");
    answer.body.on("data", (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.trim()) events.push(JSON.parse(line) as WatchEvent);
      }
      for (const wake of [...waiters]) wake();
    });
    const finish = (how: "end" | "error") => {
      finished ??= how;
      resolve(finished);
      for (const wake of [...waiters]) wake();
    };
    answer.body.on("end", () => finish("end"));
    answer.body.on("error", () => finish("error"));
  });
  return {
    events,
    ended,
    next(predicate, timeout = 5_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.find(predicate);
          if (found) return done(() => resolve(found));
          if (finished) done(() => reject(new Error(`watch ended (${finished}) before the event; got ${events.map((event) => event.type).join(", ")}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no such watch event within ${timeout} ms; got ${events.map((event) => `${event.type} ${event.object?.status?.phase ?? ""}`).join(", ")}`))), timeout);
        const done = (settle: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          settle();
        };
        waiters.add(check);
        check();
      });
    },
    close: () => controller.abort(),
  };
}

/** A minimal valid Pod running `command` with restartPolicy Never. */
export function podManifest(name: string, command: string[], extra: { env?: unknown[]; envFrom?: unknown[]; labels?: Record<string, string>; ownerReferences?: unknown[]; terminationGracePeriodSeconds?: number } = {}): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, ...(extra.labels ? { labels: extra.labels } : {}), ...(extra.ownerReferences ? { ownerReferences: extra.ownerReferences } : {}) },
    spec: {
      restartPolicy: "Never",
      terminationGracePeriodSeconds: extra.terminationGracePeriodSeconds ?? 1,
      containers: [{ name: "runner", image: "flame-ts/runner:test", command, ...(extra.env ? { env: extra.env } : {}), ...(extra.envFrom ? { envFrom: extra.envFrom } : {}) }],
    },
  };
}

/** `node -e script` as a container command. */
export function nodeCommand(script: string): string[] {
  return [process.execPath, "-e", script];
}
