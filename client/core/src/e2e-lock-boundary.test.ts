/**
 * The E2E lock never leaves the E2E layer: outside client/core/src/e2e and
 * client/core/src/group no source takes it (`.exclusive(`, `lock.run(`) or
 * holds one; only the composition root (session-units.ts) makes the one
 * instance and hands it to PairwiseSessions and GroupSessions.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

const SOURCE_DIR = import.meta.dirname;
/** Where the lock lives and is taken. */
const LAYER = ["e2e", "group"];
/** The one file that makes the lock (and never calls it). */
const COMPOSITION_ROOT = join("session", "session-units.ts");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") ? [path] : [];
  });
}

const outside = sources(SOURCE_DIR)
  .map((path) => relative(SOURCE_DIR, path))
  .filter((path) => !LAYER.some((dir) => path.startsWith(`${dir}/`)));

const read = (path: string): string => readFileSync(join(SOURCE_DIR, path), "utf8");

describe("the E2E lock stays in the E2E layer", () => {
  it("finds the session units among the sources outside it", () => {
    expect(outside).toContain(join("session", "sealer.ts"));
    expect(outside).toContain(COMPOSITION_ROOT);
  });

  it("no source outside e2e/ and group/ takes a lock", () => {
    const offenders = outside.filter((path) => /\.exclusive\(|\block\.run\(|E2eLock\b[^;\n]*\.run\(/i.test(read(path)));
    expect(offenders).toEqual([]);
  });

  it("no source outside e2e/ and group/ but the composition root names the lock", () => {
    const offenders = outside.filter(
      (path) => path !== COMPOSITION_ROOT && /\bE2eLock\b|e2e-lock\.ts/.test(read(path)),
    );
    expect(offenders).toEqual([]);
  });

  it("the composition root only makes the lock and hands it over", () => {
    const root = read(COMPOSITION_ROOT);
    expect(root.match(/new E2eLock\(\)/g)).toHaveLength(1);
    expect(root).not.toMatch(/\block\s*\.\s*\w+\(/);
  });
});
