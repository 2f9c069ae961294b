import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DevicesChangedError, isError, newId, newMessageId, ChatKind, ErrorCode } from "@remessenger/protocol";
import { SqliteStore } from "../store/sqlite-store.ts";
import type { ChatState, MessageDraft, Store } from "../store/store.ts";
import { ChatActor } from "./chat-actor.ts";
import { systemClock } from "./clock.ts";
import { checkDeviceCoverage, coverageGap } from "./device-coverage.ts";
import { LocalPushBus } from "./push-bus.ts";

let store: Store;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coverage-test-"));
  store = await SqliteStore.open({ dataDir: dir });
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const deviceIds = fc.uniqueArray(fc.constantFrom(...Array.from({ length: 8 }, (_, i) => `d${i}`)), { maxLength: 8 });

describe("coverageGap", () => {
  it("names exactly what is missing and what is stale, and nothing when they match", () => {
    fc.assert(
      fc.property(deviceIds, deviceIds, (expected, given) => {
        const gap = coverageGap(expected, given);
        const missing = expected.filter((id) => !given.includes(id)).sort();
        const stale = given.filter((id) => !expected.includes(id)).sort();
        if (missing.length === 0 && stale.length === 0) expect(gap).toBeUndefined();
        else expect(gap).toEqual({ missingDeviceIds: missing, staleDeviceIds: stale });
      }),
    );
  });

  it("ignores order", () => {
    expect(coverageGap(["b", "a"], ["a", "b"])).toBeUndefined();
    expect(coverageGap(["b", "a"], ["c", "a"])).toEqual({ missingDeviceIds: ["b"], staleDeviceIds: ["c"] });
  });
});

interface Pair {
  chat: ChatState;
  alice: { userId: string; deviceId: string };
  bobDevices: string[];
}

async function addUser(devices: number): Promise<{ userId: string; deviceIds: string[] }> {
  const userId = newId("user");
  const deviceIds = Array.from({ length: devices }, () => newId("device"));
  const [first, ...rest] = deviceIds;
  if (first === undefined) throw new Error("a user needs a device");
  await store.createUser(
    { userId, displayName: "u", createdAtMs: 1 },
    { deviceId: first, userId, identityKey: new Uint8Array(32).fill(1), createdAtMs: 1 },
  );
  for (const [i, deviceId] of rest.entries()) {
    await store.addDevice({
      deviceId,
      userId,
      identityKey: new Uint8Array(32).fill(i + 2),
      createdAtMs: 2 + i,
      approval: { approvedByDeviceId: first, signature: new Uint8Array(64), expiresAtMs: 10 },
    });
  }
  return { userId, deviceIds };
}

async function publishBundle(deviceId: string): Promise<void> {
  const key = { keyId: 1, publicKey: new Uint8Array(32).fill(7), signature: new Uint8Array(64) };
  await store.publishPreKeys(deviceId, {
    identityDh: { publicKey: new Uint8Array(32).fill(9), signature: new Uint8Array(64) },
    signedPreKey: key,
    oneTimePreKeys: [],
    lastResortPqPreKey: { ...key, keyId: 2, publicKey: new Uint8Array(1184) },
    oneTimePqPreKeys: [],
  });
}

async function directPair(bobDeviceCount: number, kind: ChatKind = ChatKind.CHAT_KIND_DIRECT): Promise<Pair> {
  const alice = await addUser(2);
  const bob = await addUser(bobDeviceCount);
  for (const deviceId of [...alice.deviceIds, ...bob.deviceIds]) await publishBundle(deviceId);
  const { chat } = await store.createChat(
    {
      chatId: newId("chat"),
      kind,
      title: "",
      memberUserIds: [alice.userId, bob.userId],
      createdByUserId: alice.userId,
      createdAtMs: 1,
    },
    [...alice.deviceIds, ...bob.deviceIds],
  );
  const aliceDevice = alice.deviceIds[0];
  const aliceOther = alice.deviceIds[1];
  if (aliceDevice === undefined || aliceOther === undefined) throw new Error("no device");
  return { chat, alice: { userId: alice.userId, deviceId: aliceDevice }, bobDevices: [aliceOther, ...bob.deviceIds] };
}

function draftTo(pair: Pair, deviceIds: readonly string[], messageId = newMessageId()): MessageDraft {
  return {
    messageId,
    senderUserId: pair.alice.userId,
    senderDeviceId: pair.alice.deviceId,
    serverTimeMs: 1,
    payload: new Uint8Array(0),
    devicePayloads: deviceIds.map((deviceId) => ({ deviceId, ciphertext: new Uint8Array([1, 2, 3]) })),
  };
}

describe("checkDeviceCoverage on a real store", () => {
  it("accepts a send covering every other device of both members, and refuses one that misses or adds a device", async () => {
    const pair = await directPair(2);
    const [own, bob1, bob2] = pair.bobDevices as [string, string, string];
    const stranger = newId("device");
    const results = await checkDeviceCoverage(store, pair.chat, [
      draftTo(pair, [own, bob1, bob2]),
      draftTo(pair, [own, bob1]),
      draftTo(pair, [own, bob1, bob2, stranger, pair.alice.deviceId]),
    ]);
    expect(results[0]).toBeUndefined();
    expect(results[1]).toBeInstanceOf(DevicesChangedError);
    expect(results[1]).toMatchObject({ missingDeviceIds: [bob2], staleDeviceIds: [] });
    expect(results[2]).toMatchObject({
      code: ErrorCode.ERROR_CODE_DEVICES_CHANGED,
      missingDeviceIds: [],
      staleDeviceIds: [pair.alice.deviceId, stranger].sort(),
    });
  });

  it("does not ask for a device that has not published prekeys yet, but accepts a payload for it", async () => {
    const pair = await directPair(1);
    const [own, bob1] = pair.bobDevices as [string, string];
    const linked = newId("device");
    const bobUserId = pair.chat.memberUserIds[1] ?? "";
    await store.addDevice({
      deviceId: linked,
      userId: bobUserId,
      identityKey: new Uint8Array(32).fill(42),
      createdAtMs: 5,
      approval: { approvedByDeviceId: bob1, signature: new Uint8Array(64), expiresAtMs: 10 },
    });
    const [without, withIt] = await checkDeviceCoverage(store, pair.chat, [
      draftTo(pair, [own, bob1]),
      draftTo(pair, [own, bob1, linked]),
    ]);
    expect(without).toBeUndefined();
    expect(withIt).toBeUndefined();
    await publishBundle(linked);
    const [afterPublish] = await checkDeviceCoverage(store, pair.chat, [draftTo(pair, [own, bob1])]);
    expect(afterPublish).toMatchObject({ missingDeviceIds: [linked], staleDeviceIds: [] });
  });

  it("leaves groups and sends with only a shared payload alone", async () => {
    const group = await directPair(1, ChatKind.CHAT_KIND_GROUP);
    const direct = await directPair(1);
    const shared = { ...draftTo(direct, []), payload: new Uint8Array([1]) };
    const results = await checkDeviceCoverage(store, group.chat, [draftTo(group, [])]);
    expect(results).toEqual([undefined]);
    expect(await checkDeviceCoverage(store, direct.chat, [shared])).toEqual([undefined]);
  });
});

describe("the chat actor with the coverage check", () => {
  it("stores nothing for a refused send, keeps the seq gapless, and accepts the same message id once it covers every device", async () => {
    const pair = await directPair(2);
    const actor = new ChatActor(pair.chat.chatId, {
      store,
      bus: new LocalPushBus(),
      clock: systemClock,
      onStoreError: () => undefined,
      checkSends: (chat, drafts) => checkDeviceCoverage(store, chat, drafts),
    });
    const [own, bob1, bob2] = pair.bobDevices as [string, string, string];
    const messageId = newMessageId();
    const refused = await actor.send(draftTo(pair, [own, bob1], messageId)).catch((error: unknown) => error);
    expect(isError(refused, ErrorCode.ERROR_CODE_DEVICES_CHANGED)).toBe(true);
    expect(await store.readMessages(pair.chat.chatId, 0, 10)).toEqual([]);
    const sent = await actor.send(draftTo(pair, [own, bob1, bob2], messageId));
    expect(sent).toMatchObject({ seq: 1, duplicate: false });
    const stored = await store.readMessages(pair.chat.chatId, 0, 10);
    expect(stored.map((m) => m.devicePayloads.map((p) => p.deviceId))).toEqual([[own, bob1, bob2]]);
  });
});
