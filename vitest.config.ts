import { defineConfig } from "vitest/config";

/**
 * Files that start no process, listen on nothing, build no Pool and set no
 * global (environment, OpenTelemetry, the runtime's registry): they share
 * worker processes (isolate: false), so each does not pay for a fresh fork
 * and module graph (about a second each on two cores, more than most of them
 * take). A file that does any of those belongs with the others.
 */
const SHARED_WORKER_FILES = [
  "test/errors.test.ts",
  "test/retry.test.ts",
  "test/protocol/{codec,compact-frames,isolation,runner-env,thread-fields}.test.ts",
  "test/pool/{boot-backoff,deadlines,pending-call,runner-set,scheduler}.test.ts",
  "test/control-plane/{admission,refusal-log}.test.ts",
  "test/backends/runner-launch.test.ts",
  "test/backends/kubernetes/{manifests,pod-status}.test.ts",
  "test/backends/fly/token-bucket.test.ts",
  "test/emulators/fly-rate-limit.test.ts",
  "test/observability/trace-context.test.ts",
];

export default defineConfig({
  test: {
    // Real child processes and sockets: a file per worker process. Three on two cores: most files
    // spend their time waiting on processes, timers and sockets, not computing (151 s on two, 131 s on three).
    pool: "forks",
    maxWorkers: 3,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    setupFiles: ["test/support/no-leftover-processes.ts"],
    // Transformed modules are kept on disk (node_modules/.experimental-vitest-cache) between runs: CI's second and third
    // Node versions, and every local run after the first, skip the transforms (about a sixth of a file's CPU).
    // Its key is each file's content and the config; no plugin here reads anything else.
    experimental: { fsModuleCache: true },
    projects: [
      { extends: true, test: { name: "unit", include: SHARED_WORKER_FILES, isolate: false } },
      {
        extends: true,
        test: {
          name: "processes",
          include: ["test/**/*.test.ts"],
          exclude: SHARED_WORKER_FILES,
          // Test runners start from a JavaScript copy of the sources, made once here (see the file).
          // Only this project boots runners: a global setup runs once per project that names it.
          globalSetup: ["test/support/runner-mirror.ts"],
        },
      },
    ],
  },
});
