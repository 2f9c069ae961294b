import { playwright } from "@vitest/browser-playwright";
import { defineConfig } from "vitest/config";

/**
 * Browser tests (`*.browser.test.ts`) run in Debian's Chromium, never a downloaded one:
 * `.ci/run` installs the `chromium` package when missing, and a missing binary fails
 * the run with Playwright's "executable doesn't exist" error, never a skip.
 */
const CHROMIUM_PATH = "/usr/bin/chromium";
const BROWSER_TESTS = "**/*.browser.test.ts";

export default defineConfig({
  test: {
    exclude: ["**/node_modules/**", ".tools/**", "client/app/**"],
    // End-to-end suites start real servers, Redis and CLI processes.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Both projects inherit the options above.
    projects: [
      { test: { name: "node", include: ["**/*.test.ts"], exclude: [BROWSER_TESTS] } },
      {
        test: {
          name: "browser",
          include: [BROWSER_TESTS],
          browser: {
            enabled: true,
            headless: true,
            // Failure screenshots would land in the working tree; the assertion says what failed.
            screenshotFailures: false,
            provider: playwright({ launchOptions: { executablePath: CHROMIUM_PATH } }),
            instances: [{ browser: "chromium" }],
          },
        },
      },
    ],
  },
});
