/**
 * A runner's console output, forwarded to the parent's log (by backends whose
 * runners are remote: here Kubernetes pods through the emulator), names the
 * trace and span it was written in, so the line lines up with the call's
 * trace. The ids are checked like any field from a socket.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KubernetesBackend } from "../../src/backends/kubernetes.js";
import type { KubernetesEmulator } from "../../src/emulators/kubernetes/emulator.js";
import { validateRunnerControl } from "../../src/protocol/validate.js";
import { PROTOCOL_VERSION } from "../../src/protocol/messages.js";
import { finishedSpans, makeTracedPool, registerTracing, tracedEntry } from "../fixtures/traced-app.js";
import { AGENT_MAIN } from "../support/fly.js";
import { MIRROR_EXEC_ARGV } from "../support/backends.js";
import { startTestKubernetesEmulator } from "../support/kubernetes.js";
import { waitFor } from "../support/processes.js";

describe("forwarded runner output carries its trace", () => {
  let emulator: KubernetesEmulator;
  beforeAll(async () => {
    await registerTracing();
    emulator = await startTestKubernetesEmulator({ namespace: "traced", validate: false });
  });
  afterAll(() => emulator?.close());

  it("a console line written inside a call has the call's trace id and the runner's span id in the parent's log", async () => {
    const lines: { fields: Record<string, unknown>; message: string }[] = [];
    const record = (fields: Record<string, unknown>, message: string) => void lines.push({ fields, message });
    const { pool, say } = makeTracedPool({
      name: "traced-k8s",
      max: 1,
      log: { debug: record, info: record, warn: record, error: record },
      backend: new KubernetesBackend({
        kubeconfig: await emulator.writeKubeconfig(),
        parentPod: false,
        image: "registry.example.com/traced:1",
        command: [process.execPath, ...MIRROR_EXEC_ARGV, AGENT_MAIN, tracedEntry],
        controlPlane: { host: "127.0.0.1", port: 0, advertisedHost: "127.0.0.1" },
      }),
    });
    try {
      await say("a line from inside the call");
      await waitFor(() => finishedSpans().some((span) => span.name === "say" && span.kind === 2), "the parent's CLIENT span to end");
      const client = finishedSpans().find((span) => span.name === "say" && span.kind === 2);
      await waitFor(() => lines.some((line) => line.message === "a line from inside the call"), "the runner's line in the parent's log");
      const line = lines.find((candidate) => candidate.message === "a line from inside the call")!;
      expect(line.fields).toMatchObject({ stream: "runner", trace_id: client!.traceId, span_id: expect.stringMatching(/^[0-9a-f]{16}$/) });
      expect(line.fields.span_id).not.toBe(client!.spanId);
    } finally {
      await pool.stop();
    }
  });

  it("ids that are not W3C hex ids are a protocol error", () => {
    const log = (extra: Record<string, unknown>) => () => validateRunnerControl({ type: "log", level: "info", text: "x", ...extra }, PROTOCOL_VERSION);
    expect(log({ traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331" })()).toMatchObject({ traceId: "0af7651916cd43dd8448eb211c80319c" });
    expect(log({ traceId: "0AF7651916CD43DD8448EB211C80319C", spanId: "b7ad6b7169203331" })).toThrow(/log.traceId/);
    expect(log({ traceId: "0af7651916cd43dd8448eb211c80319c" })).toThrow(/log.spanId/);
    expect(log({ traceId: { toString: () => "x" }, spanId: "b7ad6b7169203331" })).toThrow(/log.traceId/);
    expect(log({ spanId: "b7ad6b7169203331".repeat(100) })).toThrow(/log\./);
  });
});
