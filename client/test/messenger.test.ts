/**
 * The messenger API against the real server process, two profiles: a direct
 * chat and a group in the chat list with last message and unread counts,
 * markRead clearing them, a timeline paged backward through 500 messages,
 * and suspend/resume (several times) reconnecting and delivering what came
 * in meanwhile. No mocks.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type ChatListItem, Messenger, type OutboxEntry, clientSessionFactory } from "@remessenger/client-core";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { waitForEvent, waitForValue } from "../../scripts/harness/wait.ts";
import { FAST_TIMING, type TestDevice, registerTestDevice } from "./devices.ts";

let server: TestServer;
const running: Messenger[] = [];

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.stop()));
});

async function startedMessenger(device: TestDevice): Promise<Messenger> {
  const messenger = new Messenger({
    store: device.store,
    profile: device.profile,
    signer: device.signer,
    sessions: clientSessionFactory({
      profile: device.profile,
      signer: device.signer,
      store: device.store,
      e2e: device.e2e,
      timing: FAST_TIMING,
    }),
    pageSize: 50,
  });
  running.push(messenger);
  await messenger.start();
  return messenger;
}

function chatIn(items: readonly ChatListItem[], chatId: string): ChatListItem | undefined {
  return items.find((item) => item.chatId === chatId);
}

function sent(messenger: Messenger, entry: OutboxEntry): Promise<unknown> {
  return waitForEvent(
    messenger.events,
    "outbox",
    (e) => e.messageId === entry.messageId && e.state !== "queued",
    20_000,
    `${entry.messageId} sent`,
  );
}

describe("Messenger against the real server", () => {
  it("lists a direct chat and a group with last message and unread counts; markRead clears them", async () => {
    const aliceDevice = await registerTestDevice(server.url, "Alice");
    const bobDevice = await registerTestDevice(server.url, "Bob");
    const alice = await startedMessenger(aliceDevice);
    const bob = await startedMessenger(bobDevice);
    await bob.firstAttempt(10_000);

    const direct = await alice.openDirectChat(bobDevice.profile.userId);
    expect(direct.isCreated).toBe(true);
    expect((await bob.openDirectChat(aliceDevice.profile.userId)).chatId).toBe(direct.chatId);
    for (const text of ["hi Bob", "are you there?", "lunch?"]) await alice.send(direct.chatId, text);
    const groupId = await alice.createGroup("Team", [bobDevice.profile.userId], { timeoutMs: 20_000 });
    await alice.send(groupId, "hello team");

    await bob.refreshContacts();
    expect(await bob.contacts()).toEqual([
      {
        userId: aliceDevice.profile.userId,
        displayName: "Alice",
        chatIds: expect.arrayContaining([direct.chatId, groupId]) as unknown,
      },
    ]);
    const chats = bob.chats();
    const listed = await waitForValue(
      chats,
      (items) => chatIn(items, direct.chatId)?.unreadCount === 3 && chatIn(items, groupId)?.unreadCount === 1,
      "three unread in the direct chat, one in the group",
    );
    expect(listed.map((item) => item.chatId)).toEqual([groupId, direct.chatId]);
    expect(chatIn(listed, direct.chatId)).toMatchObject({
      kind: "direct",
      title: "Alice",
      lastMessage: { text: "lunch?", senderName: "Alice", isOwn: false, state: "delivered" },
    });
    expect(chatIn(listed, groupId)).toMatchObject({
      kind: "group",
      title: "Team",
      lastMessage: { text: "hello team", senderUserId: aliceDevice.profile.userId },
    });

    expect(await bob.markRead(direct.chatId)).toBe(true);
    let items = chats.value;
    expect(chatIn(items, direct.chatId)?.unreadCount).toBe(0);
    expect(chatIn(items, groupId)?.unreadCount).toBe(1);
    await bob.markRead(groupId);
    items = chats.value;
    expect(chatIn(items, groupId)?.unreadCount).toBe(0);

    // Bob's reply shows on Alice's side as the last message, and on Bob's with its own delivery state.
    const reply = await bob.send(direct.chatId, "yes, at noon");
    await sent(bob, reply);
    const aliceChats = await waitForValue(
      alice.chats(),
      (list) => chatIn(list, direct.chatId)?.lastMessage?.text === "yes, at noon",
      "Bob's reply in Alice's list",
    );
    // Alice has not fetched names: the direct chat is titled with Bob's user id.
    expect(chatIn(aliceChats, direct.chatId)).toMatchObject({ title: bobDevice.profile.userId, unreadCount: 1 });
    const bobsView = await waitForValue(
      chats,
      (list) => chatIn(list, direct.chatId)?.lastMessage?.isOwn === true,
      "Bob's own reply last",
    );
    expect(chatIn(bobsView, direct.chatId)?.ownDeliveryState).toMatch(/sent|delivered/);
    expect(chatIn(bobsView, direct.chatId)?.unreadCount).toBe(0);
  }, 60_000);

  it("pages a timeline backward through 500 messages", async () => {
    const aliceDevice = await registerTestDevice(server.url, "Alice");
    const bobDevice = await registerTestDevice(server.url, "Bob");
    const alice = await startedMessenger(aliceDevice);
    const bob = await startedMessenger(bobDevice);
    const { chatId } = await alice.openDirectChat(bobDevice.profile.userId);
    let last: OutboxEntry | undefined;
    for (let i = 1; i <= 500; i += 1) last = await alice.send(chatId, `message ${i}`);
    if (last === undefined) throw new Error("nothing sent");
    await waitForValue(
      bob.chats(),
      (items) => chatIn(items, chatId)?.unreadCount === 500,
      "500 unread at Bob",
      120_000,
    );

    const timeline = await bob.timeline(chatId);
    expect(timeline.state.value.messages).toHaveLength(50);
    expect(timeline.state.value.messages.at(-1)).toMatchObject({ text: "message 500", seq: 500, state: "delivered" });
    let pages = 1;
    while (await timeline.loadOlder()) pages += 1;
    const { messages, hasOlder } = timeline.state.value;
    expect(hasOlder).toBe(false);
    expect(pages).toBe(10);
    expect(messages.map((m) => m.text)).toEqual(Array.from({ length: 500 }, (_, i) => `message ${i + 1}`));
    expect(messages.map((m) => m.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    timeline.close();

    // Alice's own timeline shows her messages with their delivery state, seqs from the server.
    const own = await alice.timeline(chatId);
    await waitForValue(
      own.state,
      (s) => s.messages.at(-1)?.state === "delivered",
      "Alice's last message delivered",
      30_000,
    );
    expect(own.state.value.messages.at(-1)).toMatchObject({ isOwn: true, text: "message 500", seq: 500 });
    own.close();
  }, 180_000);

  it("reconnects at every resume and delivers what came in while suspended", async () => {
    const aliceDevice = await registerTestDevice(server.url, "Alice");
    const bobDevice = await registerTestDevice(server.url, "Bob");
    const alice = await startedMessenger(aliceDevice);
    const bob = await startedMessenger(bobDevice);
    const { chatId } = await alice.openDirectChat(bobDevice.profile.userId);
    await sent(alice, await alice.send(chatId, "before"));
    const timeline = await bob.timeline(chatId);
    await waitForValue(timeline.state, (s) => s.messages.some((m) => m.text === "before"), "the first message at Bob");

    for (let round = 1; round <= 3; round += 1) {
      await bob.suspend();
      expect(bob.lifecycle.value).toBe("suspended");
      expect(bob.connection.value.state).toBe("stopped");
      const texts = [`away ${round}a`, `away ${round}b`];
      for (const text of texts) await sent(alice, await alice.send(chatId, text));
      await bob.resume();
      await waitForValue(bob.connection, (s) => s.state === "connected", `Bob connected again (round ${round})`);
      await waitForValue(
        timeline.state,
        (s) => texts.every((text) => s.messages.some((m) => m.text === text)),
        `the messages of round ${round} at Bob`,
      );
    }
    expect(timeline.state.value.messages.map((m) => m.text)).toEqual([
      "before",
      "away 1a",
      "away 1b",
      "away 2a",
      "away 2b",
      "away 3a",
      "away 3b",
    ]);
    const items = await waitForValue(bob.chats(), (list) => chatIn(list, chatId)?.unreadCount === 7, "seven unread");
    expect(chatIn(items, chatId)?.lastMessage?.text).toBe("away 3b");
    timeline.close();
  }, 60_000);
});
