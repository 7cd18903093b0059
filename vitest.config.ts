import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real child processes and sockets: a file per worker process. Three on two cores: most files
    // spend their time waiting on processes, timers and sockets, not computing (151 s on two, 131 s on three).
    pool: "forks",
    maxWorkers: 3,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    setupFiles: ["test/support/no-leftover-processes.ts"],
    // Test runners start from a JavaScript copy of the sources, made once here (see the file).
    globalSetup: ["test/support/runner-mirror.ts"],
  },
});
