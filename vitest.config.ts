import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real child processes and sockets: a file per worker process, two at a time on two cores.
    pool: "forks",
    maxWorkers: 3,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    setupFiles: ["test/support/no-leftover-processes.ts"],
  },
});
