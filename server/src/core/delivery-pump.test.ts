import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  newId,
  newMessageId,
  draftOperation,
  ChatKind,
  GroupOperationKind,
  type Message,
  type ServerPush,
} from "@remessenger/protocol";
import { SqliteStore } from "../store/sqlite-store.ts";
import type { Store } from "../store/store.ts";
import { systemClock } from "./clock.ts";
import { DeliveryPump } from "./delivery-pump.ts";

/** A sink that records pushes and can be made to refuse more (a full socket). */
class RecordingSink {
  readonly pushes: ServerPush[] = [];
  isOpen = true;
  push(push: ServerPush): void {
    this.pushes.push(push);
  }
  isWritable(): boolean {
    return this.isOpen;
  }
  messages(chatId?: string): Message[] {
    return this.pushes.flatMap((p) =>
      p.push?.$case === "message" && (chatId === undefined || p.push.value.chatId === chatId) ? [p.push.value] : [],
    );
  }
  synced(): boolean {
    return this.pushes.some((p) => p.push?.$case === "syncComplete");
  }
}

let store: Store;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "pump-test-"));
  store = await SqliteStore.open({ dataDir: dir });
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

interface World {
  chatIds: string[];
  receiver: string;
  senderUser: string;
  senderDevice: string;
}

async function world(chats: number, kind: ChatKind = ChatKind.CHAT_KIND_DIRECT): Promise<World> {
  const senderUser = newId("user");
  const senderDevice = newId("device");
  const receiverUser = newId("user");
  const receiver = newId("device");
  const key = new Uint8Array(32);
  await store.createUser(
    { userId: senderUser, displayName: "s", createdAtMs: 1 },
    { deviceId: senderDevice, userId: senderUser, identityKey: key, createdAtMs: 1 },
  );
  await store.createUser(
    { userId: receiverUser, displayName: "r", createdAtMs: 1 },
    { deviceId: receiver, userId: receiverUser, identityKey: key, createdAtMs: 1 },
  );
  const chatIds: string[] = [];
  for (let i = 0; i < chats; i++) {
    const chatId = newId("chat");
    await store.createChat(
      {
        chatId,
        kind,
        title: "",
        memberUserIds: [senderUser, receiverUser],
        createdByUserId: senderUser,
        createdAtMs: 1,
      },
      [senderDevice, receiver],
    );
    chatIds.push(chatId);
  }
  return { chatIds, receiver, senderUser, senderDevice };
}

async function append(w: World, chatId: string, count: number): Promise<Message[]> {
  const drafts = Array.from({ length: count }, (_, i) => ({
    messageId: newMessageId(),
    senderUserId: w.senderUser,
    senderDeviceId: w.senderDevice,
    serverTimeMs: 1,
    payload: new TextEncoder().encode(`m${i}`),
    devicePayloads: [],
  }));
  const outcomes = await store.appendMessages(chatId, drafts);
  return outcomes.map((o, i) => ({
    chatId,
    seq: o.seq,
    messageId: drafts[i]?.messageId ?? new Uint8Array(),
    senderUserId: w.senderUser,
    senderDeviceId: w.senderDevice,
    serverTimeMs: 1,
    payload: drafts[i]?.payload ?? new Uint8Array(),
    devicePayloads: [],
  }));
}

function pumpFor(w: World, sink: RecordingSink, windowSize = 1024, pageSize = 256, via: Store = store): DeliveryPump {
  return new DeliveryPump({
    deviceId: w.receiver,
    store: via,
    sink,
    clock: systemClock,
    windowSize,
    pageSize,
    onError: (error) => {
      throw error;
    },
  });
}

async function settle(pump: DeliveryPump): Promise<void> {
  await pump.whenIdle();
}

const seqs = (messages: Message[]): number[] => messages.map((m) => m.seq);
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** The sender (as the group's admin) removes the receiver's user from `chat`. */
async function removeReceiver(w: World, chat: string, receiverUser: string) {
  const members = [w.senderUser, receiverUser].sort();
  const state = {
    chatId: chat,
    title: "",
    members,
    admins: [w.senderUser],
    epoch: 1,
    lastOperationHash: new Uint8Array(32),
  };
  const { operation, next } = draftOperation(chat, state, {
    kind: GroupOperationKind.GROUP_OPERATION_KIND_REMOVE,
    userIds: [receiverUser],
    actorUserId: w.senderUser,
    actorDeviceId: w.senderDevice,
    createdAtMs: 1,
  });
  const draft = {
    messageId: newMessageId(),
    senderUserId: w.senderUser,
    senderDeviceId: w.senderDevice,
    serverTimeMs: 1,
    payload: new Uint8Array(0),
    devicePayloads: [],
    groupOperation: { operation, signature: new Uint8Array(64) },
  };
  const outcome = await store.applyGroupOperation(chat, draft, {
    previousHash: new Uint8Array(0),
    operationHash: next.lastOperationHash,
    record: {
      chatId: chat,
      kind: ChatKind.CHAT_KIND_GROUP,
      title: "",
      memberUserIds: next.members,
      createdByUserId: w.senderUser,
      createdAtMs: 1,
      adminUserIds: next.admins,
      epoch: next.epoch,
    },
    addedDeviceIds: [],
    addedUserIds: [],
    removedDeviceIds: [w.receiver],
    removedUserIds: [receiverUser],
  });
  return { draft, outcome };
}

describe("DeliveryPump", () => {
  it("pushes each chat's queue in order, then receipts, then sync_complete with the count", async () => {
    const w = await world(3);
    const [a, b, c] = w.chatIds as [string, string, string];
    await append(w, a, 5);
    await append(w, b, 300); // more than one page
    const sink = new RecordingSink();
    const pump = pumpFor(w, sink, 1024, 100);
    await pump.start(w.chatIds);
    expect(seqs(sink.messages(a))).toEqual(range(1, 5));
    expect(seqs(sink.messages(b))).toEqual(range(1, 300));
    expect(sink.messages(c)).toEqual([]);
    const last = sink.pushes.at(-1)?.push;
    expect(last?.$case === "syncComplete" && last.value.pushed).toBe(305);
    // The sender's device acked its own messages on append: the receiver learns its cursor.
    const receipts = sink.pushes.flatMap((p) => (p.push?.$case === "receipt" ? [p.push.value] : []));
    expect(receipts.map((r) => [r.chatId, r.throughSeq])).toEqual(
      expect.arrayContaining([
        [a, 5],
        [b, 300],
      ]),
    );
  });

  it("pushes a group's operation that removes the device's user, then nothing more of the group", async () => {
    const w = await world(1, ChatKind.CHAT_KIND_GROUP);
    const [chat] = w.chatIds as [string];
    const receiverUser = (await store.getDevice(w.receiver))?.userId ?? "";
    await append(w, chat, 2);
    const sink = new RecordingSink();
    const pump = new DeliveryPump({
      deviceId: w.receiver,
      userId: receiverUser,
      store,
      sink,
      clock: systemClock,
      onError: (error) => {
        throw error;
      },
    });
    await pump.start(w.chatIds);
    expect(seqs(sink.messages(chat))).toEqual([1, 2]);

    // The sender (as admin) removes the receiver.
    const { draft, outcome } = await removeReceiver(w, chat, receiverUser);
    const removal = { ...draft, chatId: chat, seq: outcome.seq };
    pump.onMessage(removal);
    for (const m of await append(w, chat, 2)) pump.onMessage(m);
    pump.resync();
    await settle(pump);
    expect(seqs(sink.messages(chat))).toEqual([1, 2, 3]);
    // The forgotten group holds none of the window any more.
    expect(pump.unacked).toBe(0);
  });

  it("pushes a device that was behind at its removal everything through it, on this and later connections, until it acks", async () => {
    const w = await world(1, ChatKind.CHAT_KIND_GROUP);
    const [chat] = w.chatIds as [string];
    const receiverUser = (await store.getDevice(w.receiver))?.userId ?? "";
    await append(w, chat, 2);
    const connect = async (isOpen: boolean) => {
      const sink = new RecordingSink();
      sink.isOpen = isOpen;
      const pump = new DeliveryPump({
        deviceId: w.receiver,
        userId: receiverUser,
        store,
        sink,
        clock: systemClock,
        onError: (error) => {
          throw error;
        },
      });
      const chatIds = [
        ...(await store.listUserChatIds(receiverUser)),
        ...(await store.listDepartedChatIds(w.receiver)),
      ];
      void pump.start(chatIds); // resolves at sync_complete, which a full socket holds back
      await settle(pump);
      return { sink, pump };
    };
    // A full socket: nothing is pushed before the removal lands.
    const first = await connect(false);
    await removeReceiver(w, chat, receiverUser);
    await append(w, chat, 2);
    first.pump.onLeft(chat);
    first.sink.isOpen = true;
    first.pump.onWritable();
    await settle(first.pump);
    expect(seqs(first.sink.messages(chat))).toEqual([1, 2, 3]);
    expect(first.pump.unacked).toBe(0);
    first.pump.stop();

    // Not acked: owed again on the next connection, still nothing after the removal.
    const second = await connect(true);
    expect(seqs(second.sink.messages(chat))).toEqual([1, 2, 3]);
    expect(await store.ackDelivered(chat, w.receiver, 5)).toBe(3);
    second.pump.stop();
    const third = await connect(true);
    expect(third.sink.messages(chat)).toEqual([]);
    third.pump.stop();
  });

  it("follows live messages after the sync without gaps or repeats, even when events arrive during a read", async () => {
    const w = await world(1);
    const [chat] = w.chatIds as [string];
    await append(w, chat, 10);
    const sink = new RecordingSink();
    const pump = pumpFor(w, sink);
    const starting = pump.start(w.chatIds);
    // Live events racing the initial read, some twice, some out of order.
    const live = await append(w, chat, 5);
    for (const m of [...live].reverse()) pump.onMessage(m);
    for (const m of live) pump.onMessage(m);
    await starting;
    await settle(pump);
    expect(seqs(sink.messages(chat))).toEqual(range(1, 15));
  });

  it("pushes a live message that lands during a store read once, in order", async () => {
    const w = await world(1);
    const [chat] = w.chatIds as [string];
    // The real store, with the first read held until the test lets it run.
    const held: Array<() => void> = [];
    const gated: Store = Object.create(store) as Store;
    gated.readMessages = async (...args) => {
      if (held.length === 0) await new Promise<void>((resolve) => held.push(resolve));
      return store.readMessages(...args);
    };
    const sink = new RecordingSink();
    const pump = pumpFor(w, sink, 1024, 256, gated);
    const starting = pump.start(w.chatIds);
    while (held.length === 0) await new Promise((resolve) => setImmediate(resolve));
    // Seqs 1 and 2 become durable while the read waits to run: both it and the live events carry them.
    for (const m of await append(w, chat, 2)) pump.onMessage(m);
    expect(sink.messages()).toEqual([]);
    await starting; // nothing was queued at subscribe time, so the sync is complete at once
    held[0]?.();
    await pump.whenIdle();
    expect(seqs(sink.messages())).toEqual(range(1, 2));
  });

  it("pushes the sending device nothing of its own caught-up message, and keeps its order", async () => {
    const w = await world(1);
    const [chat] = w.chatIds as [string];
    const sink = new RecordingSink();
    const senderPump = new DeliveryPump({
      deviceId: w.senderDevice,
      store,
      sink,
      clock: systemClock,
      onError: (error) => {
        throw error;
      },
    });
    await senderPump.start(w.chatIds);
    const [own] = await append(w, chat, 1); // the store moved the sender's cursor onto it
    if (own === undefined) throw new Error("no message");
    senderPump.onMessage(own, true);
    expect(sink.messages()).toEqual([]);
    expect(senderPump.unacked).toBe(0);
    // The next message (someone else's, or an own one not caught up) still comes, in order.
    const [next] = await append(w, chat, 1);
    if (next === undefined) throw new Error("no message");
    senderPump.onMessage(next, false);
    await senderPump.whenIdle();
    expect(seqs(sink.messages())).toEqual([2]);
  });

  it("stops at the window of unacked messages and resumes as acks arrive", async () => {
    const w = await world(1);
    const [chat] = w.chatIds as [string];
    await append(w, chat, 50);
    const sink = new RecordingSink();
    const pump = pumpFor(w, sink, 20, 8);
    const starting = pump.start(w.chatIds);
    await settle(pump);
    expect(seqs(sink.messages())).toEqual(range(1, 20));
    expect(pump.unacked).toBe(20);
    expect(sink.synced()).toBe(false);
    pump.onAcked(chat, 15);
    await settle(pump);
    expect(seqs(sink.messages())).toEqual(range(1, 35));
    pump.onAcked(chat, 35);
    await starting;
    expect(seqs(sink.messages())).toEqual(range(1, 50));
    expect(sink.synced()).toBe(true);
  });

  it("waits while the sink is full and continues when it drains", async () => {
    const w = await world(1);
    const [chat] = w.chatIds as [string];
    const sink = new RecordingSink();
    const pump = pumpFor(w, sink);
    await pump.start(w.chatIds);
    sink.isOpen = false;
    for (const m of await append(w, chat, 7)) pump.onMessage(m);
    await settle(pump);
    expect(sink.messages()).toEqual([]);
    sink.isOpen = true;
    pump.onWritable();
    await settle(pump);
    expect(seqs(sink.messages())).toEqual(range(1, 7));
  });

  it("delivers every message once and in order under any interleaving of appends, acks and backpressure", async () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant("append" as const), chat: fc.nat(2), count: fc.integer({ min: 1, max: 12 }) }),
      fc.record({ kind: fc.constant("ack" as const) }),
      fc.record({ kind: fc.constant("block" as const) }),
      fc.record({ kind: fc.constant("unblock" as const) }),
      fc.record({ kind: fc.constant("settle" as const) }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { maxLength: 25 }),
        fc.integer({ min: 1, max: 16 }),
        async (steps, windowSize) => {
          const w = await world(3);
          const sink = new RecordingSink();
          const pump = pumpFor(w, sink, windowSize, 5);
          const starting = pump.start(w.chatIds);
          const ackAll = (): void => {
            for (const chatId of w.chatIds) {
              const last = sink.messages(chatId).at(-1);
              if (last !== undefined) pump.onAcked(chatId, last.seq);
            }
          };
          const appended = new Map<string, number>();
          for (const s of steps) {
            if (s.kind === "append") {
              const chatId = w.chatIds[s.chat] ?? "";
              const messages = await append(w, chatId, s.count);
              appended.set(chatId, (appended.get(chatId) ?? 0) + s.count);
              for (const m of messages) pump.onMessage(m);
            } else if (s.kind === "ack") ackAll();
            else if (s.kind === "block") sink.isOpen = false;
            else if (s.kind === "unblock") {
              sink.isOpen = true;
              pump.onWritable();
            } else await settle(pump);
            expect(pump.unacked).toBeLessThanOrEqual(windowSize);
          }
          sink.isOpen = true;
          pump.onWritable();
          // The client keeps acking what it gets until everything is through.
          for (let round = 0; round < 200; round++) {
            await settle(pump);
            ackAll();
            const done = w.chatIds.every((id) => sink.messages(id).length === (appended.get(id) ?? 0));
            if (done) break;
          }
          await starting;
          for (const chatId of w.chatIds) {
            expect(seqs(sink.messages(chatId))).toEqual(range(1, appended.get(chatId) ?? 0));
          }
          pump.stop();
        },
      ),
      { numRuns: 40 },
    );
  });
});
