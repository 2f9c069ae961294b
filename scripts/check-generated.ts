/**
 * Fails when gen/ is not exactly what `npm run gen` makes from proto/ now:
 * generated code is never edited by hand and never stale.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? listFiles(path) : [path];
  });
}

/** Returns the differences between gen/ and a fresh generation (empty when fresh). */
export function staleGeneratedFiles(): string[] {
  const fresh = mkdtempSync(join(tmpdir(), "remessenger-gen-"));
  try {
    const buf = join(root, "node_modules/.bin/buf");
    execFileSync(buf, ["generate", "--output", fresh], { cwd: root, stdio: "pipe" });
    // The public services' descriptors, for gRPC reflection and gRPC-web (see package.json "gen").
    const descriptors = ["--path", "proto/remessenger/v1", "--as-file-descriptor-set"];
    execFileSync(buf, ["build", ...descriptors, "-o", join(fresh, "gen/remessenger-v1.binpb")], {
      cwd: root,
      stdio: "pipe",
    });
    const committed = join(root, "gen");
    const expected = new Map(listFiles(join(fresh, "gen")).map((f) => [relative(join(fresh, "gen"), f), f]));
    const actual = new Map(listFiles(committed).map((f) => [relative(committed, f), f]));
    const problems: string[] = [];
    for (const [name, path] of expected) {
      const mine = actual.get(name);
      if (mine === undefined) problems.push(`gen/${name} is missing`);
      else if (!readFileSync(mine).equals(readFileSync(path))) problems.push(`gen/${name} differs from proto/`);
    }
    for (const name of actual.keys()) if (!expected.has(name)) problems.push(`gen/${name} has no proto source`);
    return problems;
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const problems = staleGeneratedFiles();
  if (problems.length > 0) {
    console.error(`gen/ is stale; run \`npm run gen\` and commit:\n  ${problems.join("\n  ")}`);
    process.exit(1);
  }
  console.log("gen/ is up to date with proto/");
}
