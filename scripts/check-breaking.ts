/**
 * `buf breaking` of proto/ against the main branch (origin/main when there is
 * one): a change that would break clients in the field fails here. Until main
 * has any proto/, there is nothing to break and the check says so.
 */
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");

function git(args: string[]): string | undefined {
  try {
    return execFileSync("git", args, { cwd: root, stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
  } catch {
    return undefined;
  }
}

export interface BreakingResult {
  baseline: string | undefined;
  /** buf's findings; empty when compatible. */
  findings: string;
}

export function checkBreaking(): BreakingResult {
  const ref = ["origin/main", "main"].find((name) => git(["rev-parse", "--verify", "--quiet", `${name}^{commit}`]));
  const sha = ref === undefined ? undefined : git(["rev-parse", `${ref}^{commit}`]);
  if (sha === undefined || git(["cat-file", "-e", `${sha}:proto`]) === undefined) {
    return { baseline: undefined, findings: "" };
  }
  try {
    execFileSync(resolve(root, "node_modules/.bin/buf"), ["breaking", "--against", `.git#ref=${sha},subdir=proto`], {
      cwd: root,
      stdio: "pipe",
    });
    return { baseline: `${ref} (${sha.slice(0, 12)})`, findings: "" };
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: Buffer; stderr?: Buffer };
    const findings = `${stdout?.toString() ?? ""}${stderr?.toString() ?? ""}`.trim() || String(error);
    return { baseline: `${ref} (${sha.slice(0, 12)})`, findings };
  }
}

if (import.meta.main) {
  const { baseline, findings } = checkBreaking();
  if (baseline === undefined) {
    console.log("buf breaking: main has no proto/ yet, nothing to compare against");
  } else if (findings !== "") {
    console.error(`buf breaking against ${baseline}:\n${findings}`);
    process.exit(1);
  } else {
    console.log(`buf breaking: compatible with ${baseline}`);
  }
}
