/**
 * The pool that renders images, and the functions it runs. This is the module
 * runners import (the pool's `entry`): it defines the pool and its functions
 * and nothing else, so a runner loads neither the HTTP server nor anything the
 * parent alone needs.
 *
 * On the parent, the pool's settings and backend come from the environment
 * (config.ts). On a runner the same `new Pool(...)` runs again, which is how
 * the runner finds `fractal` and `thumbnail`; its options do not matter there
 * (a pool on a runner never boots runners of its own), so the configuration is
 * not read at all: a runner's environment is not the parent's.
 */
import { fileURLToPath } from "node:url";
import { isRunner, Pool } from "flame-ts";
import type { Telemetry } from "./telemetry.js";
import { loadConfig } from "./config.js";
import { makeThumbnail, renderFractal, type FractalRequest, type ThumbnailRequest } from "./render.js";

/**
 * The file runners import: this one, as dist/pool.js once built (or
 * src/pool.ts when run from source with tsx). An absolute path, which is the
 * same in the parent and in runners booted from the parent's image.
 */
export const entry = fileURLToPath(import.meta.url);

/**
 * OpenTelemetry, when OTEL_EXPORTER_OTLP_ENDPOINT is set (telemetry.ts):
 * registered before anything runs, here, because this module is what runners
 * import too. Loaded only then, so a service without it does not pay for the SDK.
 */
export const telemetry: Telemetry | undefined = process.env.OTEL_EXPORTER_OTLP_ENDPOINT
  ? (await import("./telemetry.js")).startTelemetry(process.env.OTEL_EXPORTER_OTLP_ENDPOINT)
  : undefined;

/** The parent's configuration; undefined on a runner. Throws ConfigError (caught by server.ts) when a setting is wrong. */
export const config = isRunner() ? undefined : loadConfig();

/** The pool: scales from `POOL_MIN` (0) to `POOL_MAX` runners and back. */
export const pool = new Pool({
  name: "images",
  entry,
  backend: config?.backend,
  min: config?.pool.min ?? 0,
  max: config?.pool.max ?? 1,
  runnerThreads: config?.pool.runnerThreads ?? 1,
  maxConcurrency: config?.pool.maxConcurrency ?? 1,
  maxQueue: config?.pool.maxQueue ?? Infinity,
  idleShutdownAfter: config?.pool.idleShutdownAfter ?? 30_000,
  timeout: config?.pool.timeout ?? 30_000,
  ...(config?.pool.bootTimeout !== undefined ? { bootTimeout: config.pool.bootTimeout } : {}),
  // One line per runner coming and going, to watch the pool scale up and back to zero.
  onGrowEnd: (result, { runnerId, count }) =>
    console.log(result.ok ? `runner ${runnerId} ready (${count} in the pool)` : `runner ${runnerId} failed to boot: ${result.error.message}`),
  onShrink: ({ runnerId, reason, count }) => console.log(`runner ${runnerId} shut down (${reason}); ${count} left`),
});

/** Renders a view of the Mandelbrot set on a runner; resolves to the PNG file's bytes. */
export const fractal = pool.define("fractal", (request: FractalRequest) => renderFractal(request));

/** Resizes an uploaded PNG on a runner; resolves to the thumbnail's PNG bytes. Rejects with `remoteCode` "INVALID_IMAGE" for a bad upload. */
export const thumbnail = pool.define("thumbnail", (request: ThumbnailRequest) => makeThumbnail(request));
