import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["**/node_modules/**", ".tools/**", "client/app/**"],
    // End-to-end suites start real servers, Redis and CLI processes.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
  },
});
