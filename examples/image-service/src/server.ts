/**
 * The image service's HTTP server (the parent). Cheap requests are answered
 * here; renders go to the pool, whose runners boot on demand and shut down
 * when idle:
 *
 *   GET  /fractal?width=&height=&x=&y=&zoom=&iterations=   a PNG of the Mandelbrot set, rendered on a runner
 *   POST /thumbnail?width=&height=   (body: a PNG)          the image resized, on a runner
 *   GET  /healthz                                          200 from this process, no runner involved
 *   GET  /stats                                            the pool's runners and calls, as JSON
 *
 * SIGTERM or SIGINT stops taking requests, lets the ones in flight finish,
 * stops the pool (which terminates every runner) and exits.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  BackendError,
  BootError,
  BootTimeoutError,
  CallAbortedError,
  CallTimeoutError,
  isRunner,
  PoolStoppedError,
  QueueFullError,
  RemoteError,
  VersionMismatchError,
  type DefinedFunction,
} from "flame-ts";
import { ConfigError } from "./config.js";
import { BadRequestError, parseFractalQuery, parseThumbnailQuery } from "./params.js";

/** Largest accepted upload, in bytes. */
const MAX_UPLOAD_BYTES = 20 * 1024 * 1024;

type PoolModule = typeof import("./pool.js");

/** A response with a status; thrown by request handlers. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

async function main(): Promise<void> {
  // pool.ts reads the configuration as it loads: import it here so that a configuration error reads as one, not as a stack trace.
  let images: PoolModule;
  try {
    images = await import("./pool.js");
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
  const { pool, config } = images;
  if (!config) throw new Error("unreachable: the parent always has a configuration");

  // Checks the backend's credentials and permissions (Fly: the token can read the app; EC2: a DryRun launch) and boots POOL_MIN runners.
  try {
    await pool.start();
  } catch (error) {
    process.stderr.write(`the pool could not start on the ${config.backendKind} backend: ${(error as Error).message}\n`);
    await pool.stop();
    process.exit(1);
  }

  const server = createServer((request, response) => {
    handle(request, response, images).catch((error: unknown) => sendError(response, error));
  });
  await new Promise<void>((resolve) => server.listen(config.port, config.host, resolve));
  const { port } = server.address() as AddressInfo;
  const { min, max } = config.pool;
  console.log(`image service listening on http://localhost:${port} (backend: ${config.backendKind}; pool "images": min ${min}, max ${max})`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: closing the server and stopping the pool`);
    // If something holds the event loop open after all this, exit anyway: a platform's SIGKILL would come next.
    setTimeout(() => {
      console.error("still running 35 s after the signal; exiting");
      process.exit(1);
    }, 35_000).unref();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    // In-flight renders finish (up to the pool's shutdownTimeout, 30 s); then every runner is terminated.
    await Promise.all([closed, pool.stop()]);
    // What the SDK still holds (the last spans and metrics) goes out before the process ends.
    await images.telemetry?.shutdown();
    console.log("stopped");
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
}

async function handle(request: IncomingMessage, response: ServerResponse, { pool, config, fractal, thumbnail }: PoolModule): Promise<void> {
  const url = new URL(request.url ?? "/", "http://service");
  const route = `${request.method} ${url.pathname}`;
  switch (route) {
    case "GET /healthz":
      return sendJson(response, 200, { ok: true });
    case "GET /stats":
      return sendJson(response, 200, { backend: config?.backendKind, pool: pool.stats() });
    case "GET /fractal": {
      const view = parseFractalQuery(url.searchParams);
      return sendPng(response, await render(pool, fractal, [view], response));
    }
    case "POST /thumbnail": {
      const size = parseThumbnailQuery(url.searchParams);
      const png = await readBody(request);
      return sendPng(response, await render(pool, thumbnail, [{ png, ...size }], response));
    }
  }
  const allowed = { "/healthz": "GET", "/stats": "GET", "/fractal": "GET", "/thumbnail": "POST" }[url.pathname];
  if (allowed) throw new HttpError(405, `${url.pathname} accepts ${allowed} only`, { allow: allowed });
  throw new HttpError(404, `no such endpoint: ${url.pathname} (try GET /fractal, POST /thumbnail, GET /healthz or GET /stats)`);
}

/**
 * Runs a render on the pool. If the client goes away first, the call is
 * cancelled: a queued render never runs, a running one gets its abort signal.
 */
async function render<F extends DefinedFunction<(...args: any[]) => Buffer>>(
  pool: PoolModule["pool"],
  fn: F,
  args: Parameters<F>,
  response: ServerResponse,
): Promise<Uint8Array> {
  const clientGone = new AbortController();
  const onClose = () => {
    if (!response.writableFinished) clientGone.abort(new Error("the client closed the connection"));
  };
  response.once("close", onClose);
  try {
    return await pool.call(fn, args, { signal: clientGone.signal });
  } catch (error) {
    throw toHttpError(error);
  } finally {
    response.off("close", onClose);
  }
}

/** What a failed pool call means to an HTTP client. */
function toHttpError(error: unknown): unknown {
  if (error instanceof RemoteError && error.remoteCode === "INVALID_IMAGE") return new HttpError(400, error.message);
  if (error instanceof QueueFullError) return new HttpError(503, "too many renders waiting; try again shortly", { "retry-after": "5" });
  if (error instanceof BootError || error instanceof BootTimeoutError || error instanceof BackendError || error instanceof VersionMismatchError) {
    // The operator must see these: a deploy or a provider problem, not the client's.
    console.error(`no runner could take a render: ${error.message}`);
    return new HttpError(503, "no renderer available; try again shortly (the reason is in the service's log)", { "retry-after": "10" });
  }
  if (error instanceof PoolStoppedError) return new HttpError(503, "the service is shutting down");
  if (error instanceof CallTimeoutError) return new HttpError(504, "the render took too long (RENDER_TIMEOUT_MS)");
  if (error instanceof CallAbortedError) return new HttpError(499, "the client closed the connection");
  return error;
}

async function readBody(request: IncomingMessage): Promise<Uint8Array> {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > MAX_UPLOAD_BYTES) throw new HttpError(413, `uploads are limited to ${MAX_UPLOAD_BYTES} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_UPLOAD_BYTES) throw new HttpError(413, `uploads are limited to ${MAX_UPLOAD_BYTES} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) throw new BadRequestError("send the PNG to resize as the request body, e.g. curl --data-binary @photo.png");
  return Buffer.concat(chunks);
}

function sendPng(response: ServerResponse, png: Uint8Array): void {
  response.writeHead(200, { "content-type": "image/png", "content-length": png.byteLength });
  response.end(png);
}

function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body)}\n`;
  response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  response.end(text);
}

function sendError(response: ServerResponse, error: unknown): void {
  const known = error instanceof BadRequestError ? new HttpError(400, error.message) : error instanceof HttpError ? error : undefined;
  if (!known) console.error("request failed:", error);
  if (response.headersSent || response.destroyed) return void response.destroy();
  if (known) return sendJson(response, known.status, { error: known.message }, known.headers);
  sendJson(response, 500, { error: "internal error (see the service's log)" });
}

if (!isRunner()) await main();
