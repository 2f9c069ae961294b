/**
 * The repository's own checks, run by `npm test` so CI enforces them: the
 * protocol lints and stays compatible, gen/ is fresh, the code type-checks
 * strictly (the portable core without Node types), lints and is formatted.
 */
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { ESLint } from "eslint";
import { describe, expect, it } from "vitest";
import { checkBreaking } from "./check-breaking.ts";
import { staleGeneratedFiles } from "./check-generated.ts";

const root = resolve(import.meta.dirname, "..");
const run = promisify(execFile);

/** Runs a tool from node_modules/.bin; resolves with its output, whether it passed or not. */
async function tool(name: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await run(resolve(root, "node_modules/.bin", name), args, {
      cwd: root,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { ok: true, output: stdout + stderr };
  } catch (error) {
    const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
    return { ok: false, output: stdout + stderr };
  }
}

describe("repository checks", { timeout: 300_000 }, () => {
  it("proto/ passes buf lint", async () => {
    const result = await tool("buf", ["lint"]);
    expect(result.output).toBe("");
    expect(result.ok).toBe(true);
  });

  it("proto/ makes no breaking change against main", () => {
    expect(checkBreaking().findings).toBe("");
  });

  it("gen/ is exactly what proto/ generates now", () => {
    expect(staleGeneratedFiles()).toEqual([]);
  });

  it("TypeScript compiles strictly, and the protocol and client/core without Node types", async () => {
    const repo = await tool("tsc", ["-p", "tsconfig.json"]);
    expect(repo.output).toBe("");
    const protocol = await tool("tsc", ["-p", "protocol/tsconfig.json"]);
    expect(protocol.output).toBe("");
    const core = await tool("tsc", ["-p", "client/core/tsconfig.json"]);
    expect(core.output).toBe("");
  });

  it("ESLint reports nothing", async () => {
    const result = await tool("eslint", ["--max-warnings", "0", "."]);
    expect(result.output).toBe("");
    expect(result.ok).toBe(true);
  });

  it("ESLint refuses imports across the package boundaries, and allows the public entries", async () => {
    const eslint = new ESLint({ cwd: root });
    const refusals = async (filePath: string, specifier: string): Promise<number> => {
      const code = `import { value } from "${specifier}";\nexport const copy: unknown = value;\n`;
      const [result] = await eslint.lintText(code, { filePath });
      return result?.messages.filter((message) => message.ruleId === "no-restricted-imports").length ?? -1;
    };
    // The server imports nothing of a client, by path or by name.
    expect(await refusals("server/src/edge/to-status.ts", "../../../client/core/src/index.ts")).toBeGreaterThan(0);
    expect(await refusals("server/src/edge/to-status.ts", "@remessenger/client-core")).toBe(1);
    expect(await refusals("server/src/core/chat-actor.ts", "../../../client/cli/src/main.ts")).toBeGreaterThan(0);
    // No deep import into another package, by relative path or through its name.
    expect(await refusals("server/src/edge/to-status.ts", "../../../protocol/src/wire/ids.ts")).toBe(1);
    expect(await refusals("client/cli/src/main.ts", "../../core/src/session/client-session.ts")).toBe(1);
    expect(await refusals("client/cli/src/main.ts", "@remessenger/client-core/src/index.ts")).toBe(1);
    expect(await refusals("client/core/src/index.ts", "../../../protocol/src/wire/ids.ts")).toBe(1);
    // The portable packages take no Node built-ins; the core's ./node entry may.
    expect(await refusals("protocol/src/index.ts", "node:fs")).toBe(1);
    expect(await refusals("client/core/src/index.ts", "node:fs")).toBe(1);
    expect(await refusals("client/core/src/node/index.ts", "node:fs")).toBe(0);
    // The public entries are the way in.
    expect(await refusals("server/src/edge/to-status.ts", "@remessenger/protocol")).toBe(0);
    expect(await refusals("client/cli/src/main.ts", "@remessenger/client-core")).toBe(0);
    expect(await refusals("client/cli/src/main.ts", "@remessenger/client-core/node")).toBe(0);
  });

  it("every error class of the protocol, the server and the client core extends the one base", async () => {
    const { stdout } = await run(
      "git",
      ["grep", "-n", "-E", "class [A-Za-z]+ extends Error\\b", "--", "protocol", "server", "client/core"],
      {
        cwd: root,
      },
    ).catch((error: unknown) => ({ stdout: (error as { stdout?: string }).stdout ?? "" }));
    const classes = stdout
      .split("\n")
      .filter((line) => line.length > 0 && !line.includes(".test.ts:"))
      .map((line) => line.replace(/:\d+:/, ": "));
    expect(classes).toEqual(["protocol/src/wire/errors.ts: export class RemessengerError extends Error {"]);
  });

  it("Prettier finds every file formatted", async () => {
    const result = await tool("prettier", ["--check", "--log-level", "warn", "."]);
    expect(result.output).toBe("");
    expect(result.ok).toBe(true);
  });
});
