/**
 * The CLI is arguments and formatting over the core's messenger API: no
 * command sends a protocol request or takes the E2E lock itself, none builds
 * a ClientSession, and nothing reaches into the core past its public entries.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const SOURCE_DIR = import.meta.dirname;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") ? [path] : [];
  });
}

/** What only the core may do, each with the pattern that finds it. */
const FORBIDDEN: Array<[string, RegExp]> = [
  ["a protocol request", /session\.request\(/],
  ["the E2E lock", /\.exclusive\(/],
  ["a ClientSession of its own", /\bClientSession\b/],
  ["the session's codecs", /session\.(e2e|groups)\b/],
  ["a deep import of the core", /from "@remessenger\/client-core\/(?!node")/],
  ["a relative import of the core", /from "(\.\.\/)+core\//],
];

describe("client/cli uses only the messenger API", () => {
  const files = sources(SOURCE_DIR);

  it("finds the CLI's sources", () => {
    expect(files.some((f) => f.endsWith(join("commands", "send.ts")))).toBe(true);
  });

  it.each(FORBIDDEN)("no source holds %s", (_what, pattern) => {
    const offenders = files.filter((file) => pattern.test(readFileSync(file, "utf8")));
    expect(offenders).toEqual([]);
  });
});
