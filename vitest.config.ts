import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["packages/*/src/**/*.test.ts", "test/src/**/*.test.ts", "examples/src/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"],
    testTimeout: 60_000,
    // Integration tests run real processes on a loaded two-core machine; one retry keeps a
    // rare scheduling stall from failing the whole run. A retried test is still reported.
    retry: 1,
    hookTimeout: 60_000,
    // Integration tests start real server processes; two cores do not like many at once.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
