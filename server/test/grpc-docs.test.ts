/**
 * docs/grpc.md is run, not only read: the login recipe (docs/examples/grpc-login.ts,
 * which the page quotes) registers and logs in against a real server, and
 * every grpcurl line of the page runs through a client that knows nothing but
 * what server reflection tells (scripts/harness/reflection-client.ts).
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runToExit } from "../../scripts/harness/process.ts";
import { grpcurl } from "../../scripts/harness/reflection-client.ts";
import { startServer, type TestServer } from "../../scripts/harness/server.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const PAGE = readFileSync(join(ROOT, "docs/grpc.md"), "utf8");
const LOGIN_EXAMPLE = join(ROOT, "docs/examples/grpc-login.ts");
const DOC_ADDRESS = "127.0.0.1:8081";

/** The page's fenced blocks of one language. */
function blocks(language: string): string[] {
  return [...PAGE.matchAll(new RegExp("```" + language + "\\n([\\s\\S]*?)```", "g"))].map((match) => match[1] ?? "");
}

let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
});

async function login(): Promise<{ sessionToken: string; sessionExpiresAtMs: number; userId: string }> {
  const result = await runToExit(process.execPath, [LOGIN_EXAMPLE, server.grpcAddress]);
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: "" });
  return JSON.parse(result.stdout) as { sessionToken: string; sessionExpiresAtMs: number; userId: string };
}

describe("docs/grpc.md", () => {
  it("quotes the login recipe as the example file has it, and the recipe logs in", async () => {
    const recipe = blocks("ts")[0] ?? "";
    expect(recipe.length).toBeGreaterThan(500);
    expect(readFileSync(LOGIN_EXAMPLE, "utf8")).toContain(recipe);
    const before = Date.now();
    const session = await login();
    expect(session.userId).toMatch(/^u[a-z2-7]{26}$/);
    // The token's lifetime the page states: 24 hours.
    expect(session.sessionExpiresAtMs - before).toBeGreaterThanOrEqual(24 * 60 * 60 * 1000 - 60_000);
    expect(session.sessionExpiresAtMs - before).toBeLessThanOrEqual(24 * 60 * 60 * 1000 + 60_000);
  });

  it("runs every grpcurl line through reflection alone, with the token from the recipe", async () => {
    const { sessionToken } = await login();
    const lines = blocks("sh")
      .flatMap((block) => block.split("\n"))
      .filter((line) => line.startsWith("grpcurl "));
    expect(lines.length).toBeGreaterThanOrEqual(6);
    const outputs = new Map<string, string>();
    for (const line of lines) {
      const command = line.replaceAll(DOC_ADDRESS, server.grpcAddress).replaceAll("$TOKEN", sessionToken);
      outputs.set(line.split(" ").at(-1) ?? "", await grpcurl(command));
    }
    expect(outputs.get("list")?.split("\n")).toEqual(
      expect.arrayContaining(["remessenger.v1.AuthService", "remessenger.v1.MessageService", "grpc.health.v1.Health"]),
    );
    expect(outputs.get("remessenger.v1.MessageService")).toContain(
      "Subscribe(remessenger.v1.SubscribeRequest) returns (remessenger.v1.SubscribeResponse)",
    );
    expect(JSON.parse(outputs.get("grpc.health.v1.Health/Check") ?? "")).toEqual({ status: "SERVING" });
    expect(JSON.parse(outputs.get("remessenger.v1.AuthService/GetChallenge") ?? "")).toHaveProperty("nonce");
    expect(JSON.parse(outputs.get("remessenger.v1.ChatService/ListChats") ?? "")).toEqual({});
    expect(JSON.parse(outputs.get("remessenger.v1.MessageService/Ping") ?? "")).toMatchObject({ clientTimeMs: "1" });
  });
});
