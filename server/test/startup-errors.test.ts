/**
 * What an operator sees when a start cannot work, as real processes:
 * - an old Node (the machine's Node 20 when it has one, else Node 24 made to
 *   report 20) running `npm start`'s entry or the `remessenger` command gets
 *   one line naming what to do, not ERR_UNKNOWN_FILE_EXTENSION;
 * - a second server on a port in use gets one line naming the flag to change;
 * - a second server on a data directory in use is refused; a crashed
 *   server's lock does not keep the next start out; a clean stop removes it.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runToExit } from "../../scripts/harness/process.ts";
import { startServer, type TestServer } from "../../scripts/harness/server.ts";
import { CLI_BIN } from "../../scripts/harness/cli.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const SERVER_BIN = join(ROOT, "server/bin/remessenger-server.js");
const MAIN = join(ROOT, "server/src/main.ts");

/** A Node older than 24: the system's when it is one, else this Node with its version shimmed to 20. */
function oldNode(): { command: string; prefix: string[]; version: string } {
  const system = "/usr/bin/node";
  if (existsSync(system)) {
    const version = execFileSync(system, ["-p", "process.versions.node"]).toString().trim();
    if (Number(version.split(".")[0]) < 24) return { command: system, prefix: [], version };
  }
  const shim = 'Object.defineProperty(process.versions, "node", { value: "20.0.0" })';
  return { command: process.execPath, prefix: ["--import", `data:text/javascript,${shim}`], version: "20.0.0" };
}

describe("an old Node", () => {
  const node = oldNode();
  it.each([
    ["npm start's entry", SERVER_BIN, [] as string[]],
    ["the remessenger command", CLI_BIN, ["status"]],
  ])("running %s gets one line saying what to do", async (_what, entry, args) => {
    const result = await runToExit(node.command, [...node.prefix, entry, ...args]);
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`needs Node 24 or newer, this is Node ${node.version}`);
    expect(lines[0]).toContain(`source ${join(ROOT, "scripts/use-node-24.sh")}`);
    expect(result.stdout).toBe("");
  });
});

describe("a second server", () => {
  let first: TestServer;
  const otherDirs: string[] = [];
  const otherDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), "remessenger-second-"));
    otherDirs.push(dir);
    return dir;
  };
  /** A server process started with `args`, run until it exits (it must not start). */
  const secondServer = (args: string[]) => runToExit(process.execPath, [MAIN, "--log-level", "warn", ...args]);
  const expectOneLine = (stderr: string): string => {
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(stderr).not.toMatch(/^\s+at /m);
    return lines[0] ?? "";
  };

  beforeAll(async () => {
    first = await startServer();
  });

  afterAll(async () => {
    await first.cleanup();
    for (const dir of otherDirs) rmSync(dir, { recursive: true, force: true });
  });

  it("on the gRPC port in use says so in one line naming --grpc-listen", async () => {
    const result = await secondServer([
      "--listen",
      "127.0.0.1:0",
      "--grpc-listen",
      first.grpcAddress,
      "--data",
      otherDir(),
    ]);
    expect(result.code).toBe(1);
    const line = expectOneLine(result.stderr);
    expect(line).toContain(`${first.grpcAddress} is already in use`);
    expect(line).toContain("--grpc-listen");
    expect(result.stdout).not.toContain("No address added");
  });

  it("on the main port in use says so in one line naming --listen", async () => {
    const main = new URL(first.url).host;
    const result = await secondServer(["--listen", main, "--grpc-listen", "off", "--data", otherDir()]);
    expect(result.code).toBe(1);
    const line = expectOneLine(result.stderr);
    expect(line).toContain(`${main} is already in use`);
    expect(line).toContain("--listen HOST:PORT");
  });

  it("on the data directory of a live server is refused, even with gRPC off", async () => {
    const result = await secondServer(["--listen", "127.0.0.1:0", "--grpc-listen", "off", "--data", first.dataDir]);
    expect(result.code).toBe(1);
    const line = expectOneLine(result.stderr);
    expect(line).toContain(`data directory ${first.dataDir} is in use by another server (pid ${first.pid})`);
  });

  it("starts on the directory of a server that crashed, and a clean stop leaves no lock", async () => {
    await first.kill();
    expect(existsSync(join(first.dataDir, "server.lock"))).toBe(true);
    await first.restart();
    expect((await fetch(`${first.url}/readyz`)).status).toBe(200);
    expect(await first.stop()).toBe(0);
    expect(existsSync(join(first.dataDir, "server.lock"))).toBe(false);
  });
});
