/**
 * The traced side of the warm round trip: a parent process of its own, with
 * OpenTelemetry's SDK registered (a batch span processor and an exporter that
 * drops everything, the W3C propagator, the AsyncLocalStorage context
 * manager), and the entry of its runner, which registers the same SDK. The
 * SDK is registered for the whole process, so it cannot share the bench's
 * process with the untraced rows: the bench drives it over IPC
 * (traced-rig.ts). Plain JavaScript on the built package, like
 * bench/fixtures/app.mjs, so its runner starts like a production runner.
 */
import { fileURLToPath } from "node:url";
import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { currentRunner, Pool, ProcessBackend } from "../../dist/index.js";

const dropEverything = { export: (_spans, done) => done({ code: 0 }), shutdown: async () => undefined };
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(dropEverything)] }));
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

const runner = currentRunner();
if (runner) {
  new Pool({ name: runner.pool, max: 1, log: false }).define("noop", () => undefined);
} else {
  const pool = new Pool({ name: "bench-traced", entry: fileURLToPath(import.meta.url), min: 1, max: 1, log: false, backend: new ProcessBackend({ execArgv: [] }) });
  const noop = pool.define("noop", () => undefined);
  await pool.start();
  await noop();
  process.on("message", async (message) => {
    if (message.type === "batch") {
      const latencies = new Array(message.calls);
      for (let i = 0; i < message.calls; i++) {
        const start = performance.now();
        await noop();
        latencies[i] = performance.now() - start;
      }
      process.send({ type: "latencies", latencies });
    } else if (message.type === "stop") {
      await pool.stop();
      process.disconnect();
    }
  });
  process.send({ type: "ready" });
}
