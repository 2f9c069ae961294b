/**
 * docs/client-core.md's minimal client is run, not only read: the page quotes
 * docs/examples/minimal-client.ts word for word (tsc compiles that file with
 * the repository), and here two such clients register on a real server
 * process, say hello, and one is opened again from its kept store and vault
 * as a restarted app would, and hears the next hello.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryClientStore, MemoryKeyVault, type Messenger } from "@remessenger/client-core";
import { minimalClient } from "../../docs/examples/minimal-client.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { waitUntil } from "../../scripts/harness/wait.ts";

const ROOT = join(import.meta.dirname, "../..");

let server: TestServer;
const running: Messenger[] = [];

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await Promise.all(running.map((messenger) => messenger.stop()));
  await server.cleanup();
});

describe("docs/client-core.md", () => {
  it("quotes the minimal client exactly as docs/examples/minimal-client.ts has it", () => {
    const page = readFileSync(join(ROOT, "docs/client-core.md"), "utf8");
    const example = readFileSync(join(ROOT, "docs/examples/minimal-client.ts"), "utf8");
    expect(page).toContain("```ts\n" + example + "```");
  });

  it("runs the minimal client: two users say hello, and a reopened profile hears the next one", async () => {
    const aliceStore = new MemoryClientStore();
    const aliceVault = new MemoryKeyVault();
    const aliceLines: string[] = [];
    const bobLines: string[] = [];
    const alice = await minimalClient(aliceStore, aliceVault, server.url, "alice", (line) => aliceLines.push(line));
    running.push(alice.messenger);
    const bob = await minimalClient(new MemoryClientStore(), new MemoryKeyVault(), server.url, "bob", (line) =>
      bobLines.push(line),
    );
    running.push(bob.messenger);

    await bob.sayHello(alice.userId);
    await waitUntil(() => aliceLines.some((line) => line.endsWith(": hello")), 20_000, "alice hears bob");
    expect(aliceLines).toContain("[connected] websocket");
    expect(aliceLines.filter((line) => line.endsWith(": hello"))).toHaveLength(1);

    // A restarted app: the same store and vault, nothing else kept.
    await alice.messenger.stop();
    const reopenedLines: string[] = [];
    const reopened = await minimalClient(aliceStore, aliceVault, server.url, "alice", (line) =>
      reopenedLines.push(line),
    );
    running.push(reopened.messenger);
    expect(reopened.userId).toBe(alice.userId);
    await bob.sayHello(alice.userId);
    await waitUntil(() => reopenedLines.some((line) => line.endsWith(": hello")), 20_000, "the reopened alice");
    expect(reopenedLines.filter((line) => line.endsWith(": hello"))).toHaveLength(1);
    expect(bobLines).toContain("[connected] websocket");
  });
});
