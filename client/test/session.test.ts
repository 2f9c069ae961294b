/**
 * The client session against the real server process: delivery, resume,
 * offline queueing, stall detection and refusal. No mocks.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type OutboxEntry, type ClientSession, type ReceivedMessageEvent, contentText } from "@remessenger/client-core";
import { ChatKind } from "@remessenger/protocol";
import { type TestDevice, registerTestDevice, sessionFor } from "./devices.ts";
import { waitForEvent, waitUntil } from "../../scripts/harness/wait.ts";

let server: TestServer;
const sessions: ClientSession[] = [];

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
});

afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.stop()));
});

async function started(device: TestDevice, options: Parameters<typeof sessionFor>[1] = {}): Promise<ClientSession> {
  const session = sessionFor(device, options);
  sessions.push(session);
  await session.start();
  return session;
}

async function directChat(from: ClientSession, to: TestDevice): Promise<string> {
  const { chat } = await from.request(
    "createChat",
    { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [to.profile.userId], title: "" },
    { timeoutMs: 5_000 },
  );
  if (chat === undefined) throw new Error("no chat in the answer");
  return chat.chatId;
}

function collectMessages(session: ClientSession): ReceivedMessageEvent[] {
  const seen: ReceivedMessageEvent[] = [];
  session.events.on("message", (event) => seen.push(event));
  return seen;
}

function waitForState(session: ClientSession, state: string, timeoutMs = 10_000): Promise<unknown> {
  if (session.status.state === state) return Promise.resolve();
  return waitForEvent(session.events, "connection", (s) => s.state === state, timeoutMs, `state ${state}`);
}

function waitForOutbox(session: ClientSession, messageId: string, state: OutboxEntry["state"]): Promise<OutboxEntry> {
  return waitForEvent(
    session.events,
    "outbox",
    (e) => e.messageId === messageId && e.state === state,
    10_000,
    `${messageId} ${state}`,
  );
}

describe("ClientSession against the real server", () => {
  it("delivers messages in order and marks them sent, then delivered", async () => {
    const alice = await registerTestDevice(server.url, "Alice");
    const bob = await registerTestDevice(server.url, "Bob");
    const a = await started(alice);
    const b = await started(bob);
    const received = collectMessages(b);
    const chatId = await directChat(a, bob);

    const entries = [];
    for (const text of ["one", "two", "three"]) entries.push(await a.send(chatId, text));
    const last = entries[2]!;
    const allDelivered = waitForOutbox(a, last.messageId, "delivered");
    await waitForEvent(b.events, "message", (e) => e.message.messageId === last.messageId);
    await allDelivered;

    expect(received.map((e) => [e.message.seq, contentText(e.message.content), e.message.senderUserId])).toEqual([
      [1, "one", alice.profile.userId],
      [2, "two", alice.profile.userId],
      [3, "three", alice.profile.userId],
    ]);
    const outbox = await alice.store.listOutbox({ limit: 10 });
    expect(outbox.map((e) => [e.state, e.seq])).toEqual([
      ["delivered", 1],
      ["delivered", 2],
      ["delivered", 3],
    ]);
    expect(a.status.queuedCount).toBe(0);
  });

  it("keeps messages queued while the server is down and sends them when it is back", async () => {
    const alice = await registerTestDevice(server.url, "Alice");
    const bob = await registerTestDevice(server.url, "Bob");
    const a = await started(alice);
    const chatId = await directChat(a, bob);

    await server.stop();
    await waitForState(a, "offline");
    const entry = await a.send(chatId, "while you were away");
    expect(entry.state).toBe("queued");
    expect((await alice.store.getOutboxEntry(entry.messageId))?.state).toBe("queued");
    expect(a.status.lastFailure?.reason).toBeTruthy();

    const sent = waitForOutbox(a, entry.messageId, "sent");
    await server.restart();
    expect((await sent).seq).toBe(1);

    const b = await started(bob);
    const first = await waitForEvent(b.events, "message", () => true);
    expect(contentText(first.message.content)).toBe("while you were away");
  });

  it("notices a silent stall by the ping deadline, goes degraded, then reconnects", async () => {
    const alice = await registerTestDevice(server.url, "Alice");
    const a = await started(alice, { subscribe: false });
    await waitForState(a, "connected");
    const states: string[] = [];
    a.events.on("connection", (s) => states.push(s.state));

    server.pause();
    try {
      await waitForState(a, "offline", 10_000);
    } finally {
      server.resume();
    }
    await waitForState(a, "connected", 10_000);
    expect(states.slice(0, 2)).toEqual(["degraded", "offline"]);
    expect(a.status.lastFailure?.reason).toMatch(/ping/);
  });

  it("marks a message failed when the server refuses it for good", async () => {
    const alice = await registerTestDevice(server.url, "Alice");
    const a = await started(alice);
    const unknownChat = "c" + "a".repeat(26);
    const entry = await a.send(unknownChat, "hello?");
    const failed = await waitForOutbox(a, entry.messageId, "failed");
    expect(failed.problem?.code).toBe("NOT_FOUND");
    // The chat moves on: a later message to a real chat still goes.
    const bob = await registerTestDevice(server.url, "Bob");
    const chatId = await directChat(a, bob);
    const next = await a.send(chatId, "hi");
    await waitForOutbox(a, next.messageId, "sent");
  });

  it("stops retrying when the server does not know the device", async () => {
    const alice = await registerTestDevice(server.url, "Alice");
    const impostor: TestDevice = { ...alice, profile: { ...alice.profile, deviceId: "d" + "b".repeat(26) } };
    const a = await started(impostor);
    await waitForState(a, "refused");
    expect(a.status.lastFailure?.code).toBe("UNAUTHENTICATED");
    await expect(a.whenLoggedIn({ timeoutMs: 1_000 })).rejects.toThrow(/refused/);
  });
});

describe.each(["embedded", "redis"] as const)("ClientSession across a server crash (%s store)", (store) => {
  let crashing: TestServer;

  beforeAll(async () => {
    crashing = await startServer({ store });
  });

  afterAll(async () => {
    await crashing.cleanup();
  });

  it("resumes by itself and shows each message once after the server is SIGKILLed mid-delivery", async () => {
    const alice = await registerTestDevice(crashing.url, "Alice");
    const bob = await registerTestDevice(crashing.url, "Bob");
    const a = await started(alice);
    const b = await started(bob);
    const received = collectMessages(b);
    const chatId = await directChat(a, bob);

    for (let i = 1; i <= 5; i++) await a.send(chatId, `m${i}`);
    await waitForEvent(b.events, "message", (e) => e.message.seq === 2);
    await crashing.kill();
    // The resync after the restart: the server resends what was not acked; none of it shows twice.
    const resynced = waitForEvent(b.events, "synced", () => true, 15_000, "the resync");
    await crashing.restart();
    // Message 5 may have arrived before the kill took effect: wait on what was received, not on a new event.
    await waitUntil(() => Promise.resolve(received.some((e) => e.message.seq === 5)), 15_000, "message 5");
    await resynced;

    expect(received.map((e) => e.message.seq)).toEqual([1, 2, 3, 4, 5]);
    expect((await bob.store.listReceived(chatId, 0, 100)).map((m) => contentText(m.content))).toEqual([
      "m1",
      "m2",
      "m3",
      "m4",
      "m5",
    ]);
    // Alice may learn a seq only by resending after the restart (the answer died with the server).
    await waitUntil(async () => (await alice.store.countOutbox("queued")) === 0, 15_000, "Alice's outbox to drain");
    const outbox = await alice.store.listOutbox({ limit: 10 });
    expect(outbox.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
  });
});
