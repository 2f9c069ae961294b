import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isError, newId, newMessageId, ChatKind, ErrorCode, type Message } from "@remessenger/protocol";
import { SqliteStore } from "../store/sqlite-store.ts";
import type { MessageDraft, Store } from "../store/store.ts";
import { ChatActor, type ChatActorDeps } from "./chat-actor.ts";
import { systemClock } from "./clock.ts";
import { LocalPushBus } from "./push-bus.ts";

let store: Store;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "actor-test-"));
  store = await SqliteStore.open({ dataDir: dir });
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function chatWithMember(): Promise<{ chatId: string; userId: string; deviceId: string }> {
  const userId = newId("user");
  const deviceId = newId("device");
  await store.createUser(
    { userId, displayName: "m", createdAtMs: 1 },
    { deviceId, userId, identityKey: new Uint8Array(32), createdAtMs: 1 },
  );
  const chatId = newId("chat");
  await store.createChat(
    {
      chatId,
      kind: ChatKind.CHAT_KIND_GROUP,
      title: "",
      memberUserIds: [userId],
      createdByUserId: userId,
      createdAtMs: 1,
    },
    [deviceId],
  );
  return { chatId, userId, deviceId };
}

function draft(userId: string, deviceId: string, messageId = newMessageId()): MessageDraft {
  return {
    messageId,
    senderUserId: userId,
    senderDeviceId: deviceId,
    serverTimeMs: 1,
    payload: new Uint8Array([1]),
    devicePayloads: [],
  };
}

/** The real store, counting appends and optionally failing the next one. */
function countingStore(): { store: Store; appends: number[]; failNext(): void } {
  const appends: number[] = [];
  let shouldFail = false;
  const wrapped = Object.create(store) as Store;
  wrapped.appendMessages = (chatId, drafts) => {
    appends.push(drafts.length);
    if (shouldFail) {
      shouldFail = false;
      return Promise.reject(new Error("disk on fire"));
    }
    return store.appendMessages(chatId, drafts);
  };
  return { store: wrapped, appends, failNext: () => (shouldFail = true) };
}

function deps(s: Store, bus = new LocalPushBus(), errors: unknown[] = []): ChatActorDeps {
  return { store: s, bus, clock: systemClock, onStoreError: (_chat, error) => errors.push(error) };
}

describe("ChatActor", () => {
  it("batches every send that arrives in one turn into one append and answers each with its seq", async () => {
    const { chatId, userId, deviceId } = await chatWithMember();
    const counting = countingStore();
    const actor = new ChatActor(chatId, deps(counting.store));
    const outcomes = await Promise.all(Array.from({ length: 100 }, () => actor.send(draft(userId, deviceId))));
    expect(outcomes.map((o) => o.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(counting.appends).toEqual([100]);
  });

  it("publishes each new message once to the members, in seq order, a duplicate in its batch not at all, and a later repeat again", async () => {
    const { chatId, userId, deviceId } = await chatWithMember();
    const bus = new LocalPushBus();
    const published: Message[] = [];
    bus.subscribe(userId, (event) => {
      if (event.kind === "message") published.push(event.message);
    });
    const actor = new ChatActor(chatId, deps(store, bus));
    const id = newMessageId();
    const [a, b, c] = await Promise.all([
      actor.send(draft(userId, deviceId, id)),
      actor.send(draft(userId, deviceId)),
      actor.send(draft(userId, deviceId, id)),
    ]);
    expect([a?.seq, b?.seq, c?.seq]).toEqual([1, 2, 1]);
    expect(c?.duplicate).toBe(true);
    expect(published.map((m) => m.seq)).toEqual([1, 2]);
    // A repeat in a later batch: its first answer may never have arrived, so nobody may have heard of it.
    expect(await actor.send(draft(userId, deviceId, id))).toMatchObject({ seq: 1, duplicate: true });
    expect(published.map((m) => m.seq)).toEqual([1, 2, 1]);
  });

  it("refuses senders who are not members and chats that do not exist, without touching the store", async () => {
    const { chatId, deviceId } = await chatWithMember();
    const counting = countingStore();
    const actor = new ChatActor(chatId, deps(counting.store));
    await expect(actor.send(draft(newId("user"), deviceId))).rejects.toSatisfy((e) =>
      isError(e, ErrorCode.ERROR_CODE_NOT_FOUND),
    );
    const ghost = new ChatActor(newId("chat"), deps(counting.store));
    await expect(ghost.send(draft(newId("user"), deviceId))).rejects.toSatisfy((e) =>
      isError(e, ErrorCode.ERROR_CODE_NOT_FOUND),
    );
    expect(counting.appends).toEqual([]);
  });

  it("answers UNAVAILABLE when the store fails, and a retry with the same id then succeeds once", async () => {
    const { chatId, userId, deviceId } = await chatWithMember();
    const counting = countingStore();
    const errors: unknown[] = [];
    const actor = new ChatActor(chatId, deps(counting.store, new LocalPushBus(), errors));
    const id = newMessageId();
    counting.failNext();
    await expect(actor.send(draft(userId, deviceId, id))).rejects.toSatisfy((e) =>
      isError(e, ErrorCode.ERROR_CODE_UNAVAILABLE),
    );
    expect(errors).toHaveLength(1);
    expect(await actor.send(draft(userId, deviceId, id))).toMatchObject({ seq: 1, duplicate: false });
    expect(await actor.send(draft(userId, deviceId, id))).toMatchObject({ seq: 1, duplicate: true });
  });

  it("becomes idle once its mailbox is worked off", async () => {
    const { chatId, userId, deviceId } = await chatWithMember();
    const actor = new ChatActor(chatId, deps(store));
    const sending = actor.send(draft(userId, deviceId));
    expect(actor.isIdleSince(Number.MAX_SAFE_INTEGER, 0)).toBe(false);
    await actor.whenIdle();
    await sending;
    expect(actor.isIdleSince(Number.MAX_SAFE_INTEGER, 0)).toBe(true);
  });
});
