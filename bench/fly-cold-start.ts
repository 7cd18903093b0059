/**
 * Cold start through the Fly Machines API emulator against the child-process
 * backend: the time from the first call on an empty pool to its result (boot,
 * connect, hello, call), median over RUNS runs of each.
 *
 *   npx tsx bench/fly-cold-start.ts [runs]
 *
 * Both start the same runner (the agent from source under tsx, loading the
 * test app); the Fly path adds the API round trips (create, and the machine
 * watch) and the emulator's spawn, which is what this shows.
 */
import { makePool } from "../test/fixtures/app.js";
import { testProcessBackend } from "../test/support/backends.js";
import { pretendParentOnFly, startTestEmulator, testFlyBackend } from "../test/support/fly.js";

const runs = Number(process.argv[2] ?? "7");
pretendParentOnFly();

async function coldStart(name: string, backendFor: () => Promise<{ backend: Parameters<typeof makePool>[0]["backend"]; close(): Promise<void> }>): Promise<number> {
  const { backend, close } = await backendFor();
  const { pool, echo } = makePool({ name, max: 1, backend, bootTimeout: 20_000 });
  const started = performance.now();
  await pool.call(echo, ["hello"]);
  const elapsed = performance.now() - started;
  await pool.stop();
  await close();
  return elapsed;
}

function summary(samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return `median ${median.toFixed(0)} ms (min ${sorted[0]!.toFixed(0)}, max ${sorted.at(-1)!.toFixed(0)}, n=${sorted.length})`;
}

const processSamples: number[] = [];
const flySamples: number[] = [];
// Interleaved, so drift in the machine's load hits both alike.
for (let run = 0; run < runs; run += 1) {
  processSamples.push(
    await coldStart(`process-${run}`, async () => ({ backend: testProcessBackend(), close: async () => undefined })),
  );
  flySamples.push(
    await coldStart(`fly-${run}`, async () => {
      // A fresh emulator each run: no rate-limit state carried from the last.
      const emulator = await startTestEmulator();
      return { backend: testFlyBackend(emulator), close: () => emulator.close() };
    }),
  );
}
process.stdout.write(`cold start, child-process backend: ${summary(processSamples)}\n`);
process.stdout.write(`cold start, Fly backend via the emulator: ${summary(flySamples)}\n`);
