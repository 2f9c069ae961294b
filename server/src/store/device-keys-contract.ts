/**
 * The DeviceKeyStore part of the Store contract (run by describeStoreContract
 * for every adapter): bundles, one-time prekeys handed out once — also under
 * concurrency — and linked devices with their chat cursors.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { newId, ChatKind, ErrorCode } from "@remessenger/protocol";
import type { LinkedDevice, PreKeyUpload } from "./device-keys.ts";
import type { Store } from "./store.ts";
import type { StoreFixture } from "./store-contract.ts";

function bytes(length: number, fill: number): Uint8Array {
  return new Uint8Array(length).fill(fill);
}

function fullUpload(oneTimeIds: readonly number[], pqIds: readonly number[]): PreKeyUpload {
  return {
    identityDh: { publicKey: bytes(32, 1), signature: bytes(64, 2) },
    signedPreKey: { keyId: 7, publicKey: bytes(32, 3), signature: bytes(64, 4) },
    oneTimePreKeys: oneTimeIds.map((keyId) => ({ keyId, publicKey: bytes(32, keyId % 256) })),
    lastResortPqPreKey: { keyId: 1000, publicKey: bytes(1184, 5), signature: bytes(64, 6) },
    oneTimePqPreKeys: pqIds.map((keyId) => ({ keyId, publicKey: bytes(1184, keyId % 256), signature: bytes(64, 7) })),
  };
}

const NOTHING: PreKeyUpload = {
  identityDh: undefined,
  signedPreKey: undefined,
  oneTimePreKeys: [],
  lastResortPqPreKey: undefined,
  oneTimePqPreKeys: [],
};

export function describeDeviceKeyStoreContract(openFixture: () => Promise<StoreFixture>): void {
  describe("device keys", () => {
    let fixture: StoreFixture;
    let store: Store;

    beforeEach(async () => {
      fixture = await openFixture();
      store = fixture.store;
    });

    afterEach(async () => {
      await fixture.cleanup();
    });

    it("has no bundle before one is published, and claims nothing then", async () => {
      const deviceId = newId("device");
      expect(await store.countPreKeys(deviceId)).toEqual({ oneTimePreKeys: 0, oneTimePqPreKeys: 0, hasBundle: false });
      expect(await store.takePreKeyBundle(deviceId)).toBeUndefined();
      await store.publishPreKeys(deviceId, { ...NOTHING, oneTimePreKeys: [{ keyId: 1, publicKey: bytes(32, 1) }] });
      expect(await store.takePreKeyBundle(deviceId)).toBeUndefined();
      expect((await store.countPreKeys(deviceId)).oneTimePreKeys).toBe(1);
    });

    it("hands out each one-time prekey once, lowest id first, then the last-resort PQ key", async () => {
      const deviceId = newId("device");
      expect(await store.publishPreKeys(deviceId, fullUpload([3, 1, 2], [11]))).toEqual({
        oneTimePreKeys: 3,
        oneTimePqPreKeys: 1,
        hasBundle: true,
      });
      const first = await store.takePreKeyBundle(deviceId);
      expect(first).toEqual({
        identityDhKey: bytes(32, 1),
        identityDhSignature: bytes(64, 2),
        signedPreKey: { keyId: 7, publicKey: bytes(32, 3), signature: bytes(64, 4) },
        oneTimePreKey: { keyId: 1, publicKey: bytes(32, 1) },
        pqPreKey: { keyId: 11, publicKey: bytes(1184, 11), signature: bytes(64, 7) },
        isPqLastResort: false,
      });
      const second = await store.takePreKeyBundle(deviceId);
      expect(second?.oneTimePreKey?.keyId).toBe(2);
      expect(second?.pqPreKey.keyId).toBe(1000);
      expect(second?.isPqLastResort).toBe(true);
      expect((await store.takePreKeyBundle(deviceId))?.oneTimePreKey?.keyId).toBe(3);
      const empty = await store.takePreKeyBundle(deviceId);
      expect(empty?.oneTimePreKey).toBeUndefined();
      expect(empty?.pqPreKey.keyId).toBe(1000);
      expect(await store.countPreKeys(deviceId)).toEqual({ oneTimePreKeys: 0, oneTimePqPreKeys: 0, hasBundle: true });
    });

    it("ignores one-time key ids the device holds already, and replaces the signed prekey", async () => {
      const deviceId = newId("device");
      await store.publishPreKeys(deviceId, fullUpload([1, 2], []));
      const counts = await store.publishPreKeys(deviceId, {
        ...NOTHING,
        signedPreKey: { keyId: 8, publicKey: bytes(32, 9), signature: bytes(64, 9) },
        oneTimePreKeys: [
          { keyId: 2, publicKey: bytes(32, 99) },
          { keyId: 3, publicKey: bytes(32, 3) },
        ],
      });
      expect(counts.oneTimePreKeys).toBe(3);
      const bundle = await store.takePreKeyBundle(deviceId);
      expect(bundle?.signedPreKey.keyId).toBe(8);
      await store.takePreKeyBundle(deviceId);
      expect((await store.takePreKeyBundle(deviceId))?.oneTimePreKey).toEqual({ keyId: 3, publicKey: bytes(32, 3) });
    });

    it("never gives one one-time key to two of many concurrent claims", async () => {
      const deviceId = newId("device");
      const ids = Array.from({ length: 20 }, (_, i) => i + 1);
      await store.publishPreKeys(deviceId, fullUpload(ids, ids));
      const bundles = await Promise.all(Array.from({ length: 30 }, () => store.takePreKeyBundle(deviceId)));
      const claimed = bundles.map((b) => b?.oneTimePreKey?.keyId).filter((id) => id !== undefined);
      const claimedPq = bundles.filter((b) => b?.isPqLastResort === false).map((b) => b?.pqPreKey.keyId);
      expect(claimed.sort((a, b) => a - b)).toEqual(ids);
      expect(claimedPq.sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(ids);
    });

    it("adds a device to an existing user with its approval, and refuses taken ids and unknown users", async () => {
      const userId = newId("user");
      const first = { deviceId: newId("device"), userId, identityKey: bytes(32, 1), createdAtMs: 1 };
      await store.createUser({ userId, displayName: "Ada", createdAtMs: 1 }, first);
      const linked: LinkedDevice = {
        deviceId: newId("device"),
        userId,
        identityKey: bytes(32, 2),
        createdAtMs: 2,
        approval: { approvedByDeviceId: first.deviceId, signature: bytes(64, 3), expiresAtMs: 99 },
      };
      await store.addDevice(linked);
      const { approval, ...record } = linked;
      expect(await store.getDevice(linked.deviceId)).toEqual(record);
      expect(await store.listUserDevices(userId)).toEqual([first, record]);
      expect(await store.getDeviceApproval(linked.deviceId)).toEqual(approval);
      expect(await store.getDeviceApproval(first.deviceId)).toBeUndefined();
      await expect(store.addDevice({ ...linked, deviceId: first.deviceId })).rejects.toMatchObject({
        code: ErrorCode.ERROR_CODE_ALREADY_EXISTS,
      });
      await expect(
        store.addDevice({ ...linked, deviceId: newId("device"), userId: newId("user") }),
      ).rejects.toMatchObject({
        code: ErrorCode.ERROR_CODE_NOT_FOUND,
      });
    });

    it("gives a linked device a cursor at the chat's head, once", async () => {
      const chatId = newId("chat");
      await store.createChat(
        {
          chatId,
          kind: ChatKind.CHAT_KIND_DIRECT,
          title: "",
          memberUserIds: ["u-a"],
          createdByUserId: "u-a",
          createdAtMs: 1,
        },
        ["d-a"],
      );
      const draft = (n: number) => ({
        messageId: bytes(16, n),
        senderUserId: "u-a",
        senderDeviceId: "d-a",
        serverTimeMs: n,
        payload: bytes(4, n),
        devicePayloads: [],
      });
      await store.appendMessages(chatId, [draft(1), draft(2)]);
      expect(await store.addChatCursor(chatId, "d-new")).toBe(true);
      await store.appendMessages(chatId, [draft(3)]);
      expect(await store.addChatCursor(chatId, "d-new")).toBe(true);
      const cursors = await store.getCursors(chatId);
      expect(cursors.find((c) => c.deviceId === "d-new")).toEqual({ deviceId: "d-new", throughSeq: 2 });
      expect(await store.addChatCursor(newId("chat"), "d-new")).toBe(false);
    });
  });
}
