import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId, newMessageId, ChatKind } from "@remessenger/protocol";
import { SqliteStore } from "../store/sqlite-store.ts";
import type { DeviceAck, Store } from "../store/store.ts";
import { AckBatcher } from "./ack-batcher.ts";

let store: Store;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ack-batcher-test-"));
  store = await SqliteStore.open({ dataDir: dir });
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A group of `devices` member devices with `messages` messages in it. */
async function group(devices: number, messages: number): Promise<{ chatId: string; deviceIds: string[] }> {
  const chatId = newId("chat");
  const deviceIds = Array.from({ length: devices }, () => newId("device"));
  await store.createChat(
    { chatId, kind: ChatKind.CHAT_KIND_GROUP, title: "", memberUserIds: [], createdByUserId: "", createdAtMs: 1 },
    deviceIds,
  );
  const drafts = Array.from({ length: messages }, () => ({
    messageId: newMessageId(),
    senderUserId: "u",
    senderDeviceId: "d-sender",
    serverTimeMs: 1,
    payload: new Uint8Array([1]),
    devicePayloads: [],
  }));
  await store.appendMessages(chatId, drafts);
  return { chatId, deviceIds };
}

/** The real store, recording each batch it is given. */
function recording(): { store: Pick<Store, "ackDeliveredMany">; batches: number[] } {
  const batches: number[] = [];
  return {
    batches,
    store: {
      ackDeliveredMany: (chatId: string, acks: readonly DeviceAck[]) => {
        batches.push(acks.length);
        return store.ackDeliveredMany(chatId, acks);
      },
    },
  };
}

describe("AckBatcher", () => {
  it("takes a burst of acks to the store in one step and gives each device its own cursor", async () => {
    const { chatId, deviceIds } = await group(500, 3);
    const { store: counted, batches } = recording();
    const batcher = new AckBatcher(counted);
    const cursors = await Promise.all(deviceIds.map((id, i) => batcher.ack(chatId, id, (i % 3) + 1)));
    expect(cursors).toEqual(deviceIds.map((_, i) => (i % 3) + 1));
    expect(batches).toEqual([500]);
    expect(await batcher.ack(chatId, "d-unknown", 3)).toBeUndefined();
    expect((await store.readMessages(chatId, 0, 10)).map((m) => m.seq)).toEqual([2, 3]);
  });

  it("sends acks that arrive while a batch is in the store as the next batch", async () => {
    const { chatId, deviceIds } = await group(10, 2);
    const { store: counted, batches } = recording();
    const batcher = new AckBatcher(counted);
    const first = batcher.ack(chatId, deviceIds[0] ?? "", 1);
    await Promise.resolve();
    await Promise.resolve();
    // The first batch is in the store now: these wait and go together.
    const rest = deviceIds.slice(1).map((id) => batcher.ack(chatId, id, 2));
    expect(await first).toBe(1);
    expect(await Promise.all(rest)).toEqual(deviceIds.slice(1).map(() => 2));
    expect(batches).toEqual([1, 9]);
  });
});
