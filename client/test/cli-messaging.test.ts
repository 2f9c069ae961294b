/**
 * The CLI end to end: real server process, real `remessenger` processes.
 * Two users, a chat, messages both ways, an offline receiver catching up.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, runCliJson, startCli, type JsonLine } from "../../scripts/harness/cli.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { DATABASE_FILE } from "../cli/src/profile.ts";
import { SqliteClientStore } from "@remessenger/client-core/node";
import { textContent } from "@remessenger/client-core";
import { type CliUser, type SendResult, createDirectChat, initUser, profileRoot } from "./cli-fixtures.ts";

let server: TestServer;
const profiles = profileRoot();

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
  profiles.dispose();
});

async function listenFor(user: CliUser, count: number): Promise<JsonLine[]> {
  const listen = startCli(user.profile, ["--json", "listen", "--exit-after", String(count)]);
  const exit = await listen.exited(30_000);
  expect(exit.code, listen.stderr()).toBe(0);
  return listen.lines.filter((line) => line.type === "message");
}

describe("remessenger CLI with a real server", () => {
  it("registers two users, creates a chat, and delivers queued messages to an offline receiver in order, once", async () => {
    const alice = await initUser(profiles.profile("alice"), server.url, "Alice");
    const bob = await initUser(profiles.profile("bob"), server.url, "Bob");
    expect(alice.userId).toMatch(/^u[a-z2-7]{26}$/);
    expect(alice.deviceId).toMatch(/^d[a-z2-7]{26}$/);
    const chatId = await createDirectChat(alice, bob);
    expect(chatId).toMatch(/^c[a-z2-7]{26}$/);
    // Asking again finds the same direct chat, from either side.
    expect(await createDirectChat(bob, alice)).toBe(chatId);

    // Bob is offline (no listen) while Alice writes.
    const sent: SendResult[] = [];
    for (const text of ["one", "two", "three"])
      sent.push(await runCliJson<SendResult>(alice.profile, ["send", chatId, text]));
    expect(sent.map((s) => [s.state, s.seq])).toEqual([
      ["sent", 1],
      ["sent", 2],
      ["sent", 3],
    ]);
    for (const s of sent) expect(s.messageId).toMatch(/^[0-9a-f]{32}$/);

    const first = await listenFor(bob, 3);
    expect(first.map((m) => [m.seq, m.text, m.sender, m.messageId, m.state, m.chatId])).toEqual(
      sent.map((s, i) => [i + 1, ["one", "two", "three"][i], alice.userId, s.messageId, "received", chatId]),
    );

    // Nothing is shown twice: the next listen starts after what was acked.
    await runCliJson(alice.profile, ["send", chatId, "four"]);
    const second = await listenFor(bob, 1);
    expect(second.map((m) => [m.seq, m.text])).toEqual([[4, "four"]]);

    // And back: Bob replies, Alice's listen shows it and learns her messages were delivered.
    const reply = await runCliJson<SendResult>(bob.profile, ["send", chatId, "got them"]);
    expect(reply.seq).toBe(5);
    const aliceListen = startCli(alice.profile, ["--json", "listen", "--exit-after", "1"]);
    const replyLine = await aliceListen.next((line) => line.type === "message");
    expect(replyLine).toMatchObject({ chatId, seq: 5, text: "got them", sender: bob.userId });
    expect((await aliceListen.exited()).code).toBe(0);
    const delivered = aliceListen.lines.filter((l) => l.type === "outbox" && l.state === "delivered").map((l) => l.seq);
    expect(delivered.sort()).toEqual([1, 2, 3, 4]);

    const status = await runCliJson<{ queued: number; messages: unknown[]; connection: { state: string } }>(
      alice.profile,
      ["status"],
    );
    expect(status).toMatchObject({ queued: 0, messages: [], connection: { state: "connected" } });
  });

  it("shows live messages in a running listen, and sends what other processes put in the outbox", async () => {
    const alice = await initUser(profiles.profile("alice-live"), server.url, "Alice");
    const bob = await initUser(profiles.profile("bob-live"), server.url, "Bob");
    const chatId = await createDirectChat(alice, bob);
    const bobListen = startCli(bob.profile, ["--json", "listen"]);
    const aliceListen = startCli(alice.profile, ["--json", "listen"]);
    try {
      await bobListen.next((l) => l.type === "connection" && l.state === "connected");
      await aliceListen.next((l) => l.type === "connection" && l.state === "connected");

      const sent = await runCliJson<SendResult>(alice.profile, ["send", chatId, "live"]);
      const line = await bobListen.next((l) => l.type === "message");
      expect(line).toMatchObject({ chatId, text: "live", messageId: sent.messageId, sender: alice.userId });
      // Alice's listen hears Bob's receipt for the message its sibling process sent.
      await aliceListen.next((l) => l.type === "outbox" && l.messageId === sent.messageId && l.state === "delivered");

      // A message another process only put in the outbox (it never sent it): the running listen sends it.
      const store = SqliteClientStore.open(join(alice.profile, DATABASE_FILE));
      try {
        await store.addToOutbox({
          messageId: "ab".repeat(16),
          chatId,
          content: textContent("from the outbox", 1),
          createdAtMs: 1,
        });
      } finally {
        await store.close();
      }
      // "sent", or straight "delivered" when Bob's receipt overtook the server's answer.
      const flushed = await aliceListen.next(
        (l) => l.type === "outbox" && l.messageId === "ab".repeat(16) && l.state !== "queued",
      );
      expect(flushed).toMatchObject({ seq: 2, state: expect.stringMatching(/^(sent|delivered)$/) as unknown });
      expect(await bobListen.next((l) => l.type === "message")).toMatchObject({ text: "from the outbox", seq: 2 });

      const contacts = await runCliJson<{
        contacts: Array<{ userId: string; displayName: string; chatIds: string[] }>;
      }>(bob.profile, ["contacts"]);
      expect(contacts.contacts).toEqual([{ userId: alice.userId, displayName: "Alice", chatIds: [chatId] }]);
      const chats = await runCliJson<{ chats: Array<{ chatId: string; kind: string; members: string[] }> }>(
        bob.profile,
        ["chat", "list"],
      );
      expect(chats.chats).toEqual([
        expect.objectContaining({
          chatId,
          kind: "direct",
          members: expect.arrayContaining([alice.userId, bob.userId]) as unknown,
        }),
      ]);
    } finally {
      expect((await bobListen.stop()).code).toBe(0);
      expect((await aliceListen.stop()).code).toBe(0);
    }
  });

  it("stops quietly when its reader goes away (listen | head), keeping what it received", async () => {
    const alice = await initUser(profiles.profile("alice-pipe"), server.url, "Alice");
    const bob = await initUser(profiles.profile("bob-pipe"), server.url, "Bob");
    const chatId = await createDirectChat(alice, bob);
    const listen = startCli(bob.profile, ["--json", "listen"]);
    await listen.next((line) => line.type === "connection" && line.state === "connected", 20_000);
    listen.child.stdout?.destroy(); // the reader is gone: the next line written hits a closed pipe
    await runCliJson<SendResult>(alice.profile, ["send", chatId, "into a closed pipe", "--wait"]);
    const exit = await listen.exited(20_000);
    expect(exit.code, listen.stderr()).toBe(0);
    expect(listen.stderr()).not.toMatch(/EPIPE|\n\s+at /);
    // Stored before it was shown: it is in Bob's history, and the server does not send it again.
    const again = startCli(bob.profile, ["--json", "listen"]);
    await again.next((line) => line.type === "connection" && line.state === "connected", 20_000);
    await runCliJson<SendResult>(alice.profile, ["send", chatId, "after the pipe", "--wait"]);
    const next = await again.next((line) => line.type === "message", 20_000);
    expect(next.text).toBe("after the pipe");
    await again.stop();
  });

  it("answers bad input with a clear message and exit code 2, never a stack trace", async () => {
    const alice = await initUser(profiles.profile("alice-bad"), server.url, "Alice");
    const cases: Array<{ args: string[]; message: RegExp }> = [
      { args: ["send", "not-a-chat", "hi"], message: /not a chat id: not-a-chat/ },
      { args: ["send", `c${"q".repeat(26)}`, "hi"], message: /unknown chat/ },
      { args: ["chat", "create", "--with", "bob"], message: /not a user id: bob/ },
      { args: ["chat", "create", "--with", `u${"q".repeat(26)}`], message: /no user/ },
      { args: ["listen", "--exit-after", "-1"], message: /--exit-after/ },
      { args: ["init", "--name", "Again"], message: /initialized already/ },
    ];
    for (const { args, message } of cases) {
      const result = await runCli(alice.profile, args);
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
    const missing = await runCli(profiles.profile("nobody"), ["status"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no profile in .*init --name/);

    const json = await runCli(alice.profile, ["--json", "send", "nope", "hi"]);
    expect(JSON.parse(json.stderr)).toEqual({ error: { code: "USAGE", message: "not a chat id: nope" } });
    // Nothing was queued by the refused commands.
    expect(await runCliJson(alice.profile, ["status"])).toMatchObject({ queued: 0, messages: [] });
  });
});
