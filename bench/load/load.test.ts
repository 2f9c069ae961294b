/**
 * `npm run load` end to end, briefly, against a real server on each transport:
 * the summary (--json) counts every message sent, answered and delivered,
 * and finds none lost or duplicated. (The figures themselves are not checked:
 * timings belong to benchmarks.)
 */
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";

const LOAD = resolve(import.meta.dirname, "load.ts");
let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
});

interface Summary {
  transport: string;
  sent: number;
  answered: number;
  delivered: number;
  latencyMs: { count: number };
  errors: Record<string, number>;
  lost: number;
  duplicated: number;
}

async function load(target: string, transport: "ws" | "grpc"): Promise<Summary> {
  const args = [LOAD, "--target", target, "--transport", transport, "--clients", "6", "--chats", "3"];
  args.push("--rate", "100", "--duration", "2", "--json");
  const { stdout } = await promisify(execFile)(process.execPath, args, { timeout: 50_000 });
  return JSON.parse(stdout) as Summary;
}

describe("npm run load", () => {
  for (const transport of ["ws", "grpc"] as const) {
    it(`drives real clients over ${transport} and accounts for every message`, async () => {
      const summary = await load(transport === "ws" ? server.url : server.grpcAddress, transport);
      expect(summary.transport).toBe(transport);
      expect(summary.sent).toBeGreaterThan(0);
      expect(summary.answered).toBe(summary.sent);
      expect(summary.delivered).toBe(summary.sent);
      expect(summary.latencyMs.count).toBe(summary.delivered);
      expect(summary).toMatchObject({ errors: {}, lost: 0, duplicated: 0 });
    });
  }
});
