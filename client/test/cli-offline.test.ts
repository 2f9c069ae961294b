/**
 * The CLI when the server is away: messages wait in the outbox (exit 0, a
 * clear note) and go out once it is back — by `listen`, or by `send --wait`
 * retrying. Commands that need the server say plainly that it is unreachable.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, runCliJson, startCli } from "../../scripts/harness/cli.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type SendResult, createDirectChat, initUser, outboxOf, profileRoot } from "./cli-fixtures.ts";

let server: TestServer;
const profiles = profileRoot();

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
  profiles.dispose();
});

describe("remessenger CLI while the server is unreachable", () => {
  it("queues a message (exit 0) and a running listen sends it once the server is back", async () => {
    const alice = await initUser(profiles.profile("alice"), server.url, "Alice");
    const bob = await initUser(profiles.profile("bob"), server.url, "Bob");
    const chatId = await createDirectChat(alice, bob);
    await server.stop();
    let isRestarted = false;
    try {
      const result = await runCli(alice.profile, ["--json", "send", chatId, "while you were out"]);
      expect(result.code, result.stderr).toBe(0);
      const queued = JSON.parse(result.stdout) as SendResult;
      expect(queued).toMatchObject({ chatId, state: "queued" });
      expect(queued.reason).toBeTruthy();
      expect(result.stderr).toMatch(/queued and will be sent/);

      const status = await runCliJson<{ connection: { state: string }; queued: number; messages: SendResult[] }>(
        alice.profile,
        ["status"],
      );
      expect(status.connection.state).toBe("offline");
      expect(status.queued).toBe(1);
      expect(status.messages).toEqual([expect.objectContaining({ messageId: queued.messageId, state: "queued" })]);

      const chatCreate = await runCli(alice.profile, ["chat", "create", "--with", bob.userId]);
      expect(chatCreate.code).toBe(1);
      expect(chatCreate.stderr).toMatch(/cannot reach the server at http:\/\/127\.0\.0\.1:\d+/);

      const listen = startCli(alice.profile, ["--json", "listen"]);
      try {
        await listen.next((l) => l.type === "connection" && l.state === "offline");
        await server.restart();
        isRestarted = true;
        const sent = await listen.next(
          (l) => l.type === "outbox" && l.messageId === queued.messageId && l.state === "sent",
        );
        expect(sent.seq).toBe(1);
      } finally {
        expect((await listen.stop()).code).toBe(0);
      }
    } finally {
      if (!isRestarted) await server.restart();
    }
    const bobListen = startCli(bob.profile, ["--json", "listen", "--exit-after", "1"]);
    expect(await bobListen.next((l) => l.type === "message")).toMatchObject({ seq: 1, text: "while you were out" });
    expect((await bobListen.exited()).code).toBe(0);
  });

  it("send --wait keeps retrying until the server is back, then prints the seq", async () => {
    const alice = await initUser(profiles.profile("alice-wait"), server.url, "Alice");
    const bob = await initUser(profiles.profile("bob-wait"), server.url, "Bob");
    const chatId = await createDirectChat(alice, bob);
    await server.stop();
    const send = startCli(alice.profile, ["--json", "send", "--wait", "--timeout", "40000", chatId, "patience"]);
    try {
      // A first attempt failed and it says it keeps trying; the message is in the outbox.
      await send.stderrMatches(/cannot reach the server .*; retrying for up to \d+ s/, 15_000);
      expect((await outboxOf(alice.profile)).map((e) => e.state)).toEqual(["queued"]);
    } finally {
      await server.restart();
    }
    const exit = await send.exited(40_000);
    expect(exit.code, send.stderr()).toBe(0);
    expect(send.lines.at(-1)).toMatchObject({ chatId, state: "sent", seq: 1 });
  });

  it("send --wait gives up at its timeout with exit 1, leaving the message queued", async () => {
    const alice = await initUser(profiles.profile("alice-timeout"), server.url, "Alice");
    const bob = await initUser(profiles.profile("bob-timeout"), server.url, "Bob");
    const chatId = await createDirectChat(alice, bob);
    await server.stop();
    try {
      const result = await runCli(alice.profile, ["--json", "send", "--wait", "--timeout", "1500", chatId, "in vain"]);
      expect(result.code).toBe(1);
      expect(JSON.parse(result.stdout)).toMatchObject({ state: "queued" });
      expect(result.stderr).toMatch(/not sent within 1500 ms/);
      expect((await outboxOf(alice.profile)).map((e) => e.state)).toEqual(["queued"]);

      const init = await runCli(profiles.profile("carol"), ["--server", server.url, "init", "--name", "Carol"]);
      expect(init.code).toBe(1);
      expect(init.stderr).toMatch(/cannot register with http:\/\/127\.0\.0\.1:\d+/);
      expect(init.stderr).not.toMatch(/\n\s+at /);
    } finally {
      await server.restart();
    }
  });
});
