/**
 * The flame-ts demo: render a Mandelbrot image, split into many tiles, on a
 * pool that scales from zero runners to its max and back to zero, and compare
 * with the same work in one process.
 *
 *   npm start                       # writes examples/out/mandelbrot.png
 *   npm start -- --width 3000 --tiles 96
 *
 * This one module is both the parent and the runners' code: runners import it
 * too (ProcessBackend's default entry is the parent's main module), so the
 * `define` below registers `renderTile` on them; `isRunner()` keeps them from
 * running the demo itself.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { PNG } from "pngjs";
import { isRunner, Pool, ProcessBackend } from "flame-ts";

interface Tile {
  width: number;
  height: number;
  rowStart: number;
  rowEnd: number;
  maxIterations: number;
}

/** Real CPU work: the escape-time Mandelbrot set over rows [rowStart, rowEnd), as RGBA bytes. */
function renderRows({ width, height, rowStart, rowEnd, maxIterations }: Tile): Uint8Array {
  const pixels = new Uint8Array(width * (rowEnd - rowStart) * 4);
  const scale = 3 / width;
  for (let y = rowStart; y < rowEnd; y++) {
    const ci = (y - height / 2) * scale;
    for (let x = 0; x < width; x++) {
      const cr = (x - width * 0.65) * scale;
      let zr = 0;
      let zi = 0;
      let n = 0;
      while (n < maxIterations && zr * zr + zi * zi < 4) {
        const t = zr * zr - zi * zi + cr;
        zi = 2 * zr * zi + ci;
        zr = t;
        n++;
      }
      const offset = ((y - rowStart) * width + x) * 4;
      const shade = n === maxIterations ? 0 : Math.sqrt(n / maxIterations);
      pixels[offset] = Math.round(255 * Math.min(1, shade * 2.2));
      pixels[offset + 1] = Math.round(255 * shade * shade);
      pixels[offset + 2] = Math.round(255 * Math.min(1, 0.35 + shade));
      pixels[offset + 3] = 255;
    }
  }
  return pixels;
}

// Two runners, each using its share of this machine's cores through worker threads (runnerThreads): one
// render per thread (maxConcurrency), so a burst boots the second runner rather than queueing on the first.
// On a 2-core machine that is one thread each; on remote machines "auto" would use each machine's cores.
const max = 2;
const threadsPerRunner = Math.max(1, Math.floor(availableParallelism() / max));
const events: string[] = [];
const note = (line: string) => events.push(`${((performance.now() - demoStart) / 1000).toFixed(2)}s  ${line}`);
let demoStart = performance.now();

export const pool = new Pool({
  name: "mandelbrot",
  min: 0,
  max,
  runnerThreads: threadsPerRunner,
  maxConcurrency: threadsPerRunner,
  idleShutdownAfter: 1_000,
  backend: new ProcessBackend(),
  log: "warn",
  onGrowStart: ({ runnerId }) => note(`runner ${runnerId} booting`),
  onGrowEnd: (result, { runnerId }) => note(result.ok ? `runner ${runnerId} ready` : `runner ${runnerId} failed: ${result.error.message}`),
  onShrink: ({ runnerId, reason, count }) => note(`runner ${runnerId} shut down (${reason}); ${count} left`),
});

export const renderTile = pool.define("renderTile", (tile: Tile) => renderRows(tile));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { width: { type: "string", default: "2400" }, tiles: { type: "string", default: "64" }, iterations: { type: "string", default: "1500" } },
  });
  const width = Number(values.width);
  const height = Math.round((width * 2) / 3);
  const tileCount = Number(values.tiles);
  const maxIterations = Number(values.iterations);
  const tiles: Tile[] = Array.from({ length: tileCount }, (_, i) => ({
    width,
    height,
    rowStart: Math.floor((i * height) / tileCount),
    rowEnd: Math.floor(((i + 1) * height) / tileCount),
    maxIterations,
  }));
  console.log(`flame-ts demo: ${width}x${height} Mandelbrot in ${tileCount} tiles, pool "mandelbrot" (min 0, max ${max}, ${threadsPerRunner} thread${threadsPerRunner === 1 ? "" : "s"} per runner)\n`);

  console.log("1. The same work in this one process...");
  const localStart = performance.now();
  for (const tile of tiles) renderRows(tile);
  const localSeconds = (performance.now() - localStart) / 1000;
  console.log(`   ${localSeconds.toFixed(2)} s\n`);

  console.log(`2. On the pool, starting from zero runners (boot time included)...`);
  demoStart = performance.now();
  let done = 0;
  const status = setInterval(() => printStatus(done, tileCount), 250);
  const parts = await Promise.all(
    tiles.map((tile) =>
      renderTile(tile).then((pixels) => {
        done += 1;
        return pixels;
      }),
    ),
  );
  const poolSeconds = (performance.now() - demoStart) / 1000;
  printStatus(done, tileCount);
  clearInterval(status);
  if (process.stdout.isTTY) process.stdout.write("\n");
  for (const line of events.splice(0)) console.log(`   ${line}`);
  console.log(`   ${poolSeconds.toFixed(2)} s: ${(localSeconds / poolSeconds).toFixed(2)}x the single process\n`);

  const image = new PNG({ width, height });
  let offset = 0;
  for (const part of parts) {
    Buffer.from(part.buffer, part.byteOffset, part.byteLength).copy(image.data, offset);
    offset += part.byteLength;
  }
  mkdirSync(new URL("./out/", import.meta.url), { recursive: true });
  const output = new URL("./out/mandelbrot.png", import.meta.url);
  writeFileSync(output, PNG.sync.write(image));
  console.log(`   wrote ${output.pathname}\n`);

  console.log("3. Idle: the pool scales back to zero...");
  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      for (const line of events.splice(0)) console.log(`   ${line}`);
      if (pool.stats().runners.ready + pool.stats().runners.stopping === 0) {
        clearInterval(check);
        resolve();
      }
    }, 100);
  });
  const stats = pool.stats();
  console.log(`   0 runners left; ${stats.completed} calls completed, ${stats.failed} failed`);
  await pool.stop();
}

function printStatus(done: number, total: number): void {
  const { runners, queued } = pool.stats();
  const line = `tiles ${String(done).padStart(3)}/${total}  runners: ${runners.booting} booting, ${runners.busy} busy, ${runners.idle} idle  queued ${String(queued).padStart(3)}`;
  // A terminal gets one updating line; a log gets a line per update.
  process.stdout.write(process.stdout.isTTY ? `\r   ${line}   ` : `   ${line}\n`);
}

if (!isRunner()) await main();
