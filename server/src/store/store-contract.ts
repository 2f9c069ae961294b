/**
 * The Store contract: one suite every adapter runs (sqlite-store.test.ts,
 * redis-store.test.ts), so the core can rely on store.ts's doc comments
 * whichever adapter it is given. Each test gets fresh, empty data.
 *
 * Invariants covered: gapless seqs; idempotent appends by (chat, message id)
 * within a batch, across batches, under concurrency and after trimming, with the
 * first sender reported; the sender-cursor rule; readMessages paging; ack
 * cursors monotonic and clamped, trimming only once every cursor passed; a
 * removed group member's devices owed everything through their removal;
 * createChat idempotent; users and devices; the server secret; and durability
 * across close and reopen.
 */
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { newId, ChatKind, ErrorCode, type Message } from "@remessenger/protocol";
import { describeDeviceKeyStoreContract } from "./device-keys-contract.ts";
import type {
  AppendOutcome,
  ChatRecord,
  ChatState,
  DeviceRecord,
  GroupChange,
  MessageDraft,
  Store,
  UserRecord,
} from "./store.ts";

export interface StoreFixture {
  /** A store over fresh, empty data. */
  store: Store;
  /** Opens another store over the same data; the test closed the previous one. */
  reopen(): Promise<Store>;
  /** Closes every store this fixture opened and removes its data. */
  cleanup(): Promise<void>;
}

export function describeStoreContract(adapterName: string, openFixture: () => Promise<StoreFixture>): void {
  describe(`Store contract: ${adapterName}`, () => {
    let fixture: StoreFixture;
    let store: Store;

    beforeEach(async () => {
      fixture = await openFixture();
      store = fixture.store;
    });

    afterEach(async () => {
      await fixture.cleanup();
    });

    describeDeviceKeyStoreContract(openFixture);

    describe("server secret", () => {
      it("stores the first candidate and returns it on every later call", async () => {
        const first = bytes(32, 1);
        expect(await store.loadOrCreateServerSecret(first)).toEqual(first);
        expect(await store.loadOrCreateServerSecret(bytes(32, 2))).toEqual(first);
      });

      it("agrees on one secret when two first calls race", async () => {
        const [a, b] = await Promise.all([
          store.loadOrCreateServerSecret(bytes(32, 3)),
          store.loadOrCreateServerSecret(bytes(32, 4)),
        ]);
        expect(a).toEqual(b);
      });
    });

    describe("users and devices", () => {
      it("returns a created user and its first device, byte for byte", async () => {
        const { user, device } = newUser();
        await store.createUser(user, device);
        expect(await store.getUser(user.userId)).toEqual(user);
        const stored = await store.getDevice(device.deviceId);
        expect(stored).toEqual(device);
        expect(stored?.identityKey).toBeInstanceOf(Uint8Array);
        expect(await store.listUserDevices(user.userId)).toEqual([device]);
      });

      it("returns nothing for unknown users and devices", async () => {
        expect(await store.getUser(newId("user"))).toBeUndefined();
        expect(await store.getDevice(newId("device"))).toBeUndefined();
        expect(await store.listUserDevices(newId("user"))).toEqual([]);
      });

      it("refuses a taken user id and keeps the first user", async () => {
        const { user, device } = newUser();
        await store.createUser(user, device);
        const other = newUser();
        await expect(
          store.createUser({ ...user, displayName: "impostor" }, { ...other.device, userId: user.userId }),
        ).rejects.toMatchObject({ code: ErrorCode.ERROR_CODE_ALREADY_EXISTS });
        expect(await store.getUser(user.userId)).toEqual(user);
        expect(await store.listUserDevices(user.userId)).toEqual([device]);
      });

      it("refuses a device id another user holds and keeps its owner", async () => {
        const first = newUser();
        await store.createUser(first.user, first.device);
        const second = newUser();
        await expect(
          store.createUser(second.user, {
            ...second.device,
            deviceId: first.device.deviceId,
            userId: second.user.userId,
          }),
        ).rejects.toMatchObject({ code: ErrorCode.ERROR_CODE_ALREADY_EXISTS });
        expect(await store.getDevice(first.device.deviceId)).toEqual(first.device);
      });
    });

    describe("createChat", () => {
      it("creates a chat at head 0 and lists it under every member", async () => {
        const chat = chatRecord(["u-a", "u-b", "u-c"]);
        const result = await store.createChat(chat, ["d-a", "d-b"]);
        expect(result).toEqual({ chat: stored(chat, 0), created: true });
        expect(await store.getChat(chat.chatId)).toEqual(stored(chat, 0));
        for (const userId of chat.memberUserIds) expect(await store.listUserChatIds(userId)).toEqual([chat.chatId]);
      });

      it("puts a cursor at 0 for each given device and none for others", async () => {
        const chat = chatRecord(["u-a", "u-b"]);
        await store.createChat(chat, ["d-a1", "d-a2", "d-b"]);
        expect(sortCursors(await store.getCursors(chat.chatId))).toEqual([
          { deviceId: "d-a1", throughSeq: 0 },
          { deviceId: "d-a2", throughSeq: 0 },
          { deviceId: "d-b", throughSeq: 0 },
        ]);
      });

      it("returns the stored chat unchanged when created again", async () => {
        const chat = chatRecord(["u-a", "u-b"]);
        await store.createChat(chat, ["d-a"]);
        await store.appendMessages(chat.chatId, [draft(1, "d-a")]);
        const again = await store.createChat({ ...chat, title: "other", memberUserIds: ["u-x"], createdAtMs: 9 }, [
          "d-x",
        ]);
        expect(again).toEqual({ chat: stored(chat, 1), created: false });
        expect(await store.getCursors(chat.chatId)).toEqual([{ deviceId: "d-a", throughSeq: 1 }]);
        expect(await store.listUserChatIds("u-x")).toEqual([]);
      });

      it("lists every chat of a user", async () => {
        const first = chatRecord(["u-a", "u-b"]);
        const second = chatRecord(["u-a", "u-c"]);
        await store.createChat(first, []);
        await store.createChat(second, []);
        expect((await store.listUserChatIds("u-a")).sort()).toEqual([first.chatId, second.chatId].sort());
        expect(await store.listUserChatIds("u-c")).toEqual([second.chatId]);
      });

      it("returns nothing for an unknown chat", async () => {
        const chatId = newId("chat");
        expect(await store.getChat(chatId)).toBeUndefined();
        expect(await store.readMessages(chatId, 0, 10)).toEqual([]);
        expect(await store.getCursors(chatId)).toEqual([]);
        expect(await store.listUserChatIds(newId("user"))).toEqual([]);
      });
    });

    describe("appendMessages", () => {
      it("assigns gapless seqs from 1 in draft order", async () => {
        const chatId = await newChat(store, ["d-a"]);
        expect(await store.appendMessages(chatId, [draft(1, "d-a"), draft(2, "d-a"), draft(3, "d-a")])).toEqual([
          appended(1),
          appended(2),
          appended(3),
        ]);
        expect((await store.getChat(chatId))?.headSeq).toBe(3);
      });

      it("continues the sequence across calls", async () => {
        const chatId = await newChat(store, []);
        await store.appendMessages(chatId, [draft(1, "d-a"), draft(2, "d-a")]);
        expect(await store.appendMessages(chatId, [draft(3, "d-b")])).toEqual([appended(3)]);
      });

      it("returns the first seq for an id repeated within one batch", async () => {
        const chatId = await newChat(store, []);
        expect(await store.appendMessages(chatId, [draft(1, "d-a"), draft(2, "d-a"), draft(1, "d-b")])).toEqual([
          appended(1),
          appended(2),
          duplicate(1, "d-a"),
        ]);
        await expectStoredIds(store, chatId, [1, 2]);
      });

      it("returns the first seq and first sender for an id appended again later", async () => {
        const chatId = await newChat(store, []);
        await store.appendMessages(chatId, [draft(1, "d-a"), draft(2, "d-a")]);
        expect(await store.appendMessages(chatId, [draft(3, "d-b"), draft(2, "d-b")])).toEqual([
          appended(3),
          duplicate(2, "d-a"),
        ]);
        await expectStoredIds(store, chatId, [1, 2, 3]);
      });

      it("returns the first seq for an id appended again after its message was trimmed", async () => {
        const chatId = await newChat(store, ["d-a", "d-b"]);
        await store.appendMessages(chatId, [draft(1, "d-a")]);
        await store.ackDelivered(chatId, "d-b", 1);
        expect(await store.readMessages(chatId, 0, 10)).toEqual([]);
        expect(await store.appendMessages(chatId, [draft(1, "d-b"), draft(2, "d-b")])).toEqual([
          duplicate(1, "d-a"),
          appended(2),
        ]);
      });

      it("keeps the sequences and ids of different chats apart", async () => {
        const first = await newChat(store, []);
        const second = await newChat(store, []);
        await store.appendMessages(first, [draft(1, "d-a"), draft(2, "d-a")]);
        expect(await store.appendMessages(second, [draft(2, "d-b"), draft(1, "d-b")])).toEqual([
          appended(1),
          appended(2),
        ]);
      });

      it("returns each message as appended, with chatId and seq filled in", async () => {
        const chatId = await newChat(store, []);
        const sent: MessageDraft = {
          messageId: messageId(7),
          senderUserId: "u-a",
          senderDeviceId: "d-a",
          serverTimeMs: 1_700_000_000_123,
          payload: bytes(300, 5),
          devicePayloads: [
            { deviceId: "d-b", ciphertext: bytes(40, 6) },
            { deviceId: "d-c", ciphertext: bytes(0, 0) },
          ],
        };
        await store.appendMessages(chatId, [draft(1, "d-a"), sent]);
        const [, stored] = await store.readMessages(chatId, 0, 10);
        expect(stored).toEqual({ ...sent, chatId, seq: 2 } satisfies Message);
      });

      it("refuses appends to an unknown chat", async () => {
        await expect(store.appendMessages(newId("chat"), [draft(1, "d-a")])).rejects.toMatchObject({
          code: ErrorCode.ERROR_CODE_NOT_FOUND,
        });
      });

      it("returns no outcomes for an empty batch", async () => {
        const chatId = await newChat(store, []);
        expect(await store.appendMessages(chatId, [])).toEqual([]);
        expect((await store.getChat(chatId))?.headSeq).toBe(0);
      });

      it("gives every id exactly one seq when many appends to one chat run at once", async () => {
        const chatId = await newChat(store, ["d-0", "d-1", "d-2"]);
        // 120 calls of 5 drafts over 200 ids: most ids are sent by several calls.
        const batches = Array.from({ length: 120 }, (_, call) =>
          Array.from({ length: 5 }, (_, i) => ({ id: (call * 7 + i * 31) % 200, sender: `d-${call % 3}` })),
        );
        const outcomes = await Promise.all(batches.map((batch) => store.appendMessages(chatId, toDrafts(batch))));
        await expectConsistentOutcomes(store, chatId, batches, outcomes);
      });

      it("keeps every chat gapless when many chats append at once", async () => {
        const chatIds = await Promise.all(Array.from({ length: 40 }, () => newChat(store, [])));
        const work = chatIds.flatMap((chatId) =>
          Array.from({ length: 10 }, (_, call) => ({
            chatId,
            batch: [0, 1, 2].map((i) => ({ id: call * 3 + i, sender: "d-a" })),
          })),
        );
        const outcomes = await Promise.all(
          work.map(({ chatId, batch }) => store.appendMessages(chatId, toDrafts(batch))),
        );
        for (const chatId of chatIds) {
          const mine = work.flatMap((entry, i) => (entry.chatId === chatId ? [i] : []));
          await expectConsistentOutcomes(
            store,
            chatId,
            mine.map((i) => work[i]?.batch ?? []),
            mine.map((i) => outcomes[i] ?? []),
          );
          expect((await store.getChat(chatId))?.headSeq).toBe(30);
        }
      });

      it("matches a sequential model for any series of batches with repeated ids", async () => {
        await fc.assert(
          fc.asyncProperty(batchesArbitrary(), async (batches) => {
            const chatId = await newChat(store, []);
            const model = new Map<number, { seq: number; sender: string }>();
            for (const batch of batches) {
              const expected = batch.map(({ id, sender }): AppendOutcome => {
                const first = model.get(id);
                if (first !== undefined) return duplicate(first.seq, first.sender);
                model.set(id, { seq: model.size + 1, sender });
                return appended(model.size);
              });
              expect(await store.appendMessages(chatId, toDrafts(batch))).toEqual(expected);
            }
            const byseq = [...model.entries()].sort((a, b) => a[1].seq - b[1].seq).map(([id]) => id);
            await expectStoredIds(store, chatId, byseq);
          }),
          { numRuns: 30 },
        );
      });

      it("gives each id one seq and keeps seqs gapless for any concurrent interleaving", async () => {
        await fc.assert(
          fc.asyncProperty(batchesArbitrary(), async (batches) => {
            const chatId = await newChat(store, []);
            const outcomes = await Promise.all(batches.map((batch) => store.appendMessages(chatId, toDrafts(batch))));
            await expectConsistentOutcomes(store, chatId, batches, outcomes);
          }),
          { numRuns: 30 },
        );
      });
    });

    describe("sender cursor", () => {
      it("moves the sender's cursor onto its message when it stood one below, and says so", async () => {
        const chatId = await newChat(store, ["d-a", "d-b"]);
        expect(await store.appendMessages(chatId, [draft(1, "d-a")])).toEqual([
          { kind: "appended", seq: 1, senderCaughtUp: true },
        ]);
        expect(sortCursors(await store.getCursors(chatId))).toEqual([cursor("d-a", 1), cursor("d-b", 0)]);
      });

      it("says a sender is not caught up when its cursor is behind or it has none", async () => {
        const chatId = await newChat(store, ["d-a", "d-b"]);
        const outcomes = await store.appendMessages(chatId, [draft(1, "d-b"), draft(2, "d-a"), draft(3, "d-z")]);
        expect(outcomes.map((o) => o.kind === "appended" && o.senderCaughtUp)).toEqual([true, false, false]);
      });

      it("moves it through a batch of the sender's own messages", async () => {
        const chatId = await newChat(store, ["d-a"]);
        const outcomes = await store.appendMessages(chatId, [draft(1, "d-a"), draft(2, "d-a"), draft(3, "d-a")]);
        expect(outcomes.every((o) => o.kind === "appended" && o.senderCaughtUp)).toBe(true);
        expect(await store.getCursors(chatId)).toEqual([cursor("d-a", 3)]);
      });

      it("leaves a sender's cursor that is behind where it is", async () => {
        const chatId = await newChat(store, ["d-a", "d-b"]);
        await store.appendMessages(chatId, [draft(1, "d-b")]);
        await store.appendMessages(chatId, [draft(2, "d-a")]);
        expect(sortCursors(await store.getCursors(chatId))).toEqual([cursor("d-a", 0), cursor("d-b", 1)]);
      });

      it("does not move a cursor for a duplicate", async () => {
        const chatId = await newChat(store, ["d-a", "d-b"]);
        await store.appendMessages(chatId, [draft(1, "d-b")]);
        await store.appendMessages(chatId, [draft(1, "d-a")]);
        expect(sortCursors(await store.getCursors(chatId))).toEqual([cursor("d-a", 0), cursor("d-b", 1)]);
      });

      it("creates no cursor for a sender without one", async () => {
        const chatId = await newChat(store, ["d-a"]);
        await store.appendMessages(chatId, [draft(1, "d-z")]);
        expect(await store.getCursors(chatId)).toEqual([cursor("d-a", 0)]);
      });
    });

    describe("readMessages", () => {
      it("pages through a chat in ascending order, at most limit at a time", async () => {
        const chatId = await newChat(store, []);
        await store.appendMessages(
          chatId,
          Array.from({ length: 10 }, (_, i) => draft(i + 1, "d-a")),
        );
        expect(seqs(await store.readMessages(chatId, 0, 4))).toEqual([1, 2, 3, 4]);
        expect(seqs(await store.readMessages(chatId, 4, 4))).toEqual([5, 6, 7, 8]);
        expect(seqs(await store.readMessages(chatId, 8, 4))).toEqual([9, 10]);
        expect(await store.readMessages(chatId, 10, 4)).toEqual([]);
        expect(await store.readMessages(chatId, 99, 4)).toEqual([]);
      });

      it("returns nothing for a limit of 0", async () => {
        const chatId = await newChat(store, []);
        await store.appendMessages(chatId, [draft(1, "d-a")]);
        expect(await store.readMessages(chatId, 0, 0)).toEqual([]);
      });

      it("starts after the trimmed messages when asked from before them", async () => {
        const chatId = await newChat(store, ["d-a"]);
        await store.appendMessages(chatId, [draft(1, "d-b"), draft(2, "d-b"), draft(3, "d-b"), draft(4, "d-b")]);
        await store.ackDelivered(chatId, "d-a", 2);
        expect(seqs(await store.readMessages(chatId, 0, 1))).toEqual([3]);
        expect(seqs(await store.readMessages(chatId, 1, 10))).toEqual([3, 4]);
      });
    });

    describe("ackDelivered", () => {
      it("moves the cursor forward and returns it", async () => {
        const chatId = await chatWithMessages(store, ["d-a", "d-b"], 3);
        expect(await store.ackDelivered(chatId, "d-a", 2)).toBe(2);
        expect(sortCursors(await store.getCursors(chatId))).toEqual([cursor("d-a", 2), cursor("d-b", 0)]);
      });

      it("never moves a cursor backward", async () => {
        const chatId = await chatWithMessages(store, ["d-a"], 3);
        await store.ackDelivered(chatId, "d-a", 3);
        expect(await store.ackDelivered(chatId, "d-a", 1)).toBe(3);
        expect(await store.getCursors(chatId)).toEqual([cursor("d-a", 3)]);
      });

      it("clamps a cursor to the head", async () => {
        const chatId = await chatWithMessages(store, ["d-a"], 3);
        expect(await store.ackDelivered(chatId, "d-a", 1_000)).toBe(3);
        await store.appendMessages(chatId, [draft(100, "d-b")]);
        expect(await store.ackDelivered(chatId, "d-a", 4)).toBe(4);
      });

      it("returns undefined and changes nothing for a device without a cursor", async () => {
        const chatId = await chatWithMessages(store, ["d-a"], 2);
        expect(await store.ackDelivered(chatId, "d-z", 2)).toBeUndefined();
        expect(await store.getCursors(chatId)).toEqual([cursor("d-a", 0)]);
        expect(seqs(await store.readMessages(chatId, 0, 10))).toEqual([1, 2]);
        expect(await store.ackDelivered(newId("chat"), "d-a", 1)).toBeUndefined();
      });

      it("takes many devices' acks at once, each as alone, and trims once", async () => {
        const chatId = await chatWithMessages(store, ["d-a", "d-b", "d-c"], 3);
        expect(
          await store.ackDeliveredMany(chatId, [
            { deviceId: "d-a", throughSeq: 2 },
            { deviceId: "d-x", throughSeq: 2 },
            { deviceId: "d-b", throughSeq: 9 },
            { deviceId: "d-c", throughSeq: 1 },
            { deviceId: "d-a", throughSeq: 1 },
          ]),
        ).toEqual([2, undefined, 3, 1, 2]);
        expect(sortCursors(await store.getCursors(chatId))).toEqual([
          cursor("d-a", 2),
          cursor("d-b", 3),
          cursor("d-c", 1),
        ]);
        expect(seqs(await store.readMessages(chatId, 0, 10))).toEqual([2, 3]);
        expect(await store.ackDeliveredMany(chatId, [])).toEqual([]);
        expect(await store.ackDeliveredMany(newId("chat"), [{ deviceId: "d-a", throughSeq: 1 }])).toEqual([undefined]);
      });

      it("keeps a message until every device with a cursor acked it", async () => {
        const chatId = await chatWithMessages(store, ["d-a", "d-b", "d-c"], 3);
        await store.ackDelivered(chatId, "d-a", 3);
        await store.ackDelivered(chatId, "d-b", 2);
        expect(seqs(await store.readMessages(chatId, 0, 10))).toEqual([1, 2, 3]);
        await store.ackDelivered(chatId, "d-c", 1);
        expect(seqs(await store.readMessages(chatId, 0, 10))).toEqual([2, 3]);
        await store.ackDelivered(chatId, "d-c", 3);
        expect(seqs(await store.readMessages(chatId, 0, 10))).toEqual([3]);
        await store.ackDelivered(chatId, "d-b", 3);
        expect(await store.readMessages(chatId, 0, 10)).toEqual([]);
        expect((await store.getChat(chatId))?.headSeq).toBe(3);
      });

      it("drops a message held back only by its sender's own cursor when the sender acks", async () => {
        const chatId = await newChat(store, ["d-a"]);
        await store.appendMessages(chatId, [draft(1, "d-a")]);
        expect(await store.ackDelivered(chatId, "d-a", 1)).toBe(1);
        expect(await store.readMessages(chatId, 0, 10)).toEqual([]);
      });

      it("continues the sequence after everything was trimmed", async () => {
        const chatId = await chatWithMessages(store, ["d-a"], 2);
        await store.ackDelivered(chatId, "d-a", 2);
        expect(await store.appendMessages(chatId, [draft(50, "d-b")])).toEqual([appended(3)]);
        expect(seqs(await store.readMessages(chatId, 0, 10))).toEqual([3]);
      });
    });

    describe("group operations", () => {
      /** A change to `chat` that makes `members`/`admins`, on top of `previous`. */
      function change(
        chat: ChatRecord,
        previous: Uint8Array,
        hashByte: number,
        edit: Partial<GroupChange> & { members: string[]; admins: string[]; epoch: number },
      ): GroupChange {
        return {
          previousHash: previous,
          operationHash: bytes(32, hashByte),
          record: { ...chat, memberUserIds: edit.members, adminUserIds: edit.admins, epoch: edit.epoch },
          addedDeviceIds: edit.addedDeviceIds ?? [],
          addedUserIds: edit.addedUserIds ?? [],
          removedDeviceIds: edit.removedDeviceIds ?? [],
          removedUserIds: edit.removedUserIds ?? [],
        };
      }

      function operationDraft(n: number, senderDeviceId: string): MessageDraft {
        return {
          ...draft(n, senderDeviceId),
          payload: new Uint8Array(0),
          groupOperation: { operation: bytes(8, n), signature: bytes(64, n) },
        };
      }

      it("appends an operation on the chain head and applies its membership, cursors and listing", async () => {
        const chat = chatRecord(["u-a", "u-b", "u-c"]);
        await store.createChat(chat, ["d-a", "d-b", "d-c"]);
        const genesis = change(chat, new Uint8Array(0), 1, {
          members: ["u-a", "u-b", "u-c"],
          admins: ["u-a"],
          epoch: 1,
        });
        expect(await store.applyGroupOperation(chat.chatId, operationDraft(1, "d-a"), genesis)).toEqual({
          kind: "appended",
          seq: 1,
          senderCaughtUp: true,
        });
        await store.appendMessages(chat.chatId, [draft(2, "d-b"), draft(3, "d-b")]);
        const add = change(chat, bytes(32, 1), 2, {
          members: ["u-a", "u-b", "u-d"],
          admins: ["u-a", "u-d"],
          epoch: 2,
          addedDeviceIds: ["d-d1", "d-d2"],
          addedUserIds: ["u-d"],
          removedDeviceIds: ["d-c"],
          removedUserIds: ["u-c"],
        });
        expect(await store.applyGroupOperation(chat.chatId, operationDraft(4, "d-b"), add)).toEqual(
          expect.objectContaining({ kind: "appended", seq: 4 }),
        );
        expect(await store.getChat(chat.chatId)).toEqual({
          ...chat,
          memberUserIds: ["u-a", "u-b", "u-d"],
          adminUserIds: ["u-a", "u-d"],
          epoch: 2,
          headSeq: 4,
          lastOperationHash: bytes(32, 2),
          lastOperationSeq: 4,
        });
        // New members' devices start just below the operation; the removed member's device is owed 1..4.
        expect(await cursorOf(store, chat.chatId, "d-d1")).toBe(3);
        expect(await cursorOf(store, chat.chatId, "d-d2")).toBe(3);
        expect(await store.getDeliveryCursor(chat.chatId, "d-d1")).toEqual({ throughSeq: 3 });
        expect(await store.getDeliveryCursor(chat.chatId, "d-c")).toEqual({ throughSeq: 0, untilSeq: 4 });
        expect(await store.listDepartedChatIds("d-c")).toEqual([chat.chatId]);
        expect(await store.listDepartedChatIds("d-b")).toEqual([]);
        expect(await cursorOf(store, chat.chatId, "d-b")).toBe(0);
        expect(sortCursors(await store.getCursors(chat.chatId)).map((c) => c.deviceId)).toEqual([
          "d-a",
          "d-b",
          "d-c",
          "d-d1",
          "d-d2",
        ]);
        expect(await store.listUserChatIds("u-d")).toEqual([chat.chatId]);
        expect(await store.listUserChatIds("u-c")).toEqual([]);
        const operations = await store.readGroupOperations(chat.chatId, 0, 10);
        expect(seqs(operations)).toEqual([1, 4]);
        expect(operations[1]?.groupOperation).toEqual({ operation: bytes(8, 4), signature: bytes(64, 4) });
        expect(seqs(await store.readGroupOperations(chat.chatId, 1, 10))).toEqual([4]);
        expect(seqs(await store.readGroupOperations(chat.chatId, 0, 1))).toEqual([1]);
        expect((await store.readMessages(chat.chatId, 3, 10))[0]?.groupOperation?.signature).toEqual(bytes(64, 4));
      });

      /** A group of u-a (admin, d-a) and `others` (one device each, d-<user>), its CREATE at seq 1. */
      async function group(others: string[]): Promise<{ chat: ChatRecord; apply: Apply }> {
        const members = ["u-a", ...others];
        const chat = chatRecord(members);
        await store.createChat(
          chat,
          members.map((u) => `d-${u.slice(2)}`),
        );
        let head: Uint8Array = new Uint8Array(0);
        let hashByte = 0;
        let current = members;
        const apply: Apply = async (n, sender, edit) => {
          hashByte += 1;
          const next = [...current.filter((u) => !(edit.removed ?? []).includes(u)), ...(edit.added ?? [])];
          const planned = change(chat, head, hashByte, {
            members: next,
            admins: ["u-a"],
            epoch: hashByte,
            addedUserIds: edit.added ?? [],
            addedDeviceIds: (edit.added ?? []).map((u) => `d-${u.slice(2)}`),
            removedUserIds: edit.removed ?? [],
            removedDeviceIds: (edit.removed ?? []).map((u) => `d-${u.slice(2)}`),
          });
          const outcome = await store.applyGroupOperation(chat.chatId, operationDraft(n, sender), planned);
          head = planned.operationHash;
          current = next;
          if (outcome.kind !== "appended") throw new Error("not appended");
          return outcome.seq;
        };
        await apply(1, "d-a", {});
        return { chat, apply };
      }
      type Apply = (n: number, sender: string, edit: { added?: string[]; removed?: string[] }) => Promise<number>;

      it("keeps a removed device's cursor until it acked through its removal, holding those entries back", async () => {
        const { chat, apply } = await group(["u-b", "u-c"]);
        await store.appendMessages(chat.chatId, [draft(2, "d-a"), draft(3, "d-a")]);
        expect(await apply(4, "d-a", { removed: ["u-c"] })).toBe(4);
        await store.appendMessages(chat.chatId, [draft(5, "d-a")]);
        await store.ackDeliveredMany(chat.chatId, [
          { deviceId: "d-a", throughSeq: 5 },
          { deviceId: "d-b", throughSeq: 5 },
        ]);
        // Everything the removed device is owed is still stored; it cannot ack past its removal.
        expect(seqs(await store.readMessages(chat.chatId, 0, 10))).toEqual([1, 2, 3, 4, 5]);
        expect(await store.ackDelivered(chat.chatId, "d-c", 2)).toBe(2);
        expect(await store.getDeliveryCursor(chat.chatId, "d-c")).toEqual({ throughSeq: 2, untilSeq: 4 });
        expect(seqs(await store.readMessages(chat.chatId, 0, 10))).toEqual([3, 4, 5]);
        expect(await store.ackDelivered(chat.chatId, "d-c", 5)).toBe(4);
        // Through its removal: its cursor, its bound and its listing go, and nothing is held back any more.
        expect(await store.getDeliveryCursor(chat.chatId, "d-c")).toBeUndefined();
        expect(await cursorOf(store, chat.chatId, "d-c")).toBeUndefined();
        expect(await store.listDepartedChatIds("d-c")).toEqual([]);
        expect(await store.readMessages(chat.chatId, 0, 10)).toEqual([]);
        expect(await store.ackDelivered(chat.chatId, "d-c", 5)).toBeUndefined();
      });

      it("releases a removed device in a batch of acks like a single ack", async () => {
        const { chat, apply } = await group(["u-b", "u-c"]);
        await apply(2, "d-a", { removed: ["u-b", "u-c"] });
        await store.appendMessages(chat.chatId, [draft(3, "d-a")]);
        expect(
          await store.ackDeliveredMany(chat.chatId, [
            { deviceId: "d-b", throughSeq: 3 },
            { deviceId: "d-c", throughSeq: 1 },
            { deviceId: "d-a", throughSeq: 3 },
          ]),
        ).toEqual([2, 1, 3]);
        expect(await cursorOf(store, chat.chatId, "d-b")).toBeUndefined();
        expect(await store.getDeliveryCursor(chat.chatId, "d-c")).toEqual({ throughSeq: 1, untilSeq: 2 });
        expect(seqs(await store.readMessages(chat.chatId, 0, 10))).toEqual([2, 3]);
      });

      it("owes nothing to a device that leaves already through its own LEAVE", async () => {
        const { chat, apply } = await group(["u-b"]);
        await store.ackDelivered(chat.chatId, "d-b", 1);
        expect(await apply(2, "d-b", { removed: ["u-b"] })).toBe(2);
        expect(await cursorOf(store, chat.chatId, "d-b")).toBeUndefined();
        expect(await store.listDepartedChatIds("d-b")).toEqual([]);
      });

      it("continues a re-added device after its removal, skipping what it was out for", async () => {
        const { chat, apply } = await group(["u-b"]);
        await store.appendMessages(chat.chatId, [draft(2, "d-a")]);
        await apply(3, "d-a", { removed: ["u-b"] });
        await store.appendMessages(chat.chatId, [draft(4, "d-a")]);
        expect(await apply(5, "d-a", { added: ["u-b"] })).toBe(5);
        expect(await store.getDeliveryCursor(chat.chatId, "d-b")).toEqual({ throughSeq: 0, untilSeq: 3, resumeSeq: 4 });
        expect(await store.ackDelivered(chat.chatId, "d-b", 3)).toBe(4);
        expect(await store.getDeliveryCursor(chat.chatId, "d-b")).toEqual({ throughSeq: 4 });
        expect(await store.listDepartedChatIds("d-b")).toEqual([]);
        // Removed again while owed entries before its re-addition: the first bound only, nothing after it.
        await apply(6, "d-a", { removed: ["u-b"] });
        expect(await store.getDeliveryCursor(chat.chatId, "d-b")).toEqual({ throughSeq: 4, untilSeq: 6 });
        await apply(7, "d-a", { added: ["u-b"] });
        await apply(8, "d-a", { removed: ["u-b"] });
        expect(await store.getDeliveryCursor(chat.chatId, "d-b")).toEqual({ throughSeq: 4, untilSeq: 6 });
      });

      it("refuses an operation that does not follow the chain head and changes nothing", async () => {
        const chat = chatRecord(["u-a", "u-b"]);
        await store.createChat(chat, ["d-a", "d-b"]);
        const members = { members: ["u-a", "u-b"], admins: ["u-a"], epoch: 1 };
        await store.applyGroupOperation(
          chat.chatId,
          operationDraft(1, "d-a"),
          change(chat, new Uint8Array(0), 1, members),
        );
        const stale = change(chat, bytes(32, 9), 2, { ...members, epoch: 2, removedDeviceIds: ["d-b"] });
        await expect(store.applyGroupOperation(chat.chatId, operationDraft(2, "d-a"), stale)).rejects.toMatchObject({
          code: ErrorCode.ERROR_CODE_GROUP_CHANGED,
        });
        const after = await store.getChat(chat.chatId);
        expect(after).toMatchObject({ headSeq: 1, epoch: 1, lastOperationSeq: 1, lastOperationHash: bytes(32, 1) });
        expect(await cursorOf(store, chat.chatId, "d-b")).toBe(0);
        expect(seqs(await store.readGroupOperations(chat.chatId, 0, 10))).toEqual([1]);
        // The refused message id stays free.
        expect(await store.appendMessages(chat.chatId, [draft(2, "d-a")])).toEqual([appended(2)]);
      });

      it("answers a repeated operation as a duplicate and applies nothing again", async () => {
        const chat = chatRecord(["u-a", "u-b"]);
        await store.createChat(chat, ["d-a"]);
        const genesis = change(chat, new Uint8Array(0), 1, { members: ["u-a", "u-b"], admins: ["u-a"], epoch: 1 });
        await store.applyGroupOperation(chat.chatId, operationDraft(1, "d-a"), genesis);
        expect(await store.applyGroupOperation(chat.chatId, operationDraft(1, "d-a"), genesis)).toEqual(
          duplicate(1, "d-a"),
        );
        expect(await store.getChat(chat.chatId)).toMatchObject({ headSeq: 1, lastOperationSeq: 1 });
        expect(seqs(await store.readGroupOperations(chat.chatId, 0, 10))).toEqual([1]);
      });

      it("keeps the chain after its messages were delivered and trimmed", async () => {
        const chat = chatRecord(["u-a"]);
        await store.createChat(chat, ["d-a"]);
        const genesis = change(chat, new Uint8Array(0), 1, { members: ["u-a"], admins: ["u-a"], epoch: 1 });
        await store.applyGroupOperation(chat.chatId, operationDraft(1, "d-a"), genesis);
        await store.appendMessages(chat.chatId, [draft(2, "d-x")]);
        expect(await store.ackDelivered(chat.chatId, "d-a", 2)).toBe(2);
        expect(await store.readMessages(chat.chatId, 0, 10)).toEqual([]);
        expect(seqs(await store.readGroupOperations(chat.chatId, 0, 10))).toEqual([1]);
      });

      it("gives a chat's kind and head without its members", async () => {
        const chat = chatRecord(["u-a", "u-b"]);
        await store.createChat(chat, ["d-a"]);
        await store.appendMessages(chat.chatId, [draft(1, "d-a"), draft(2, "d-a")]);
        expect(await store.getChatHead(chat.chatId)).toEqual({ kind: ChatKind.CHAT_KIND_GROUP, headSeq: 2 });
        expect(await store.getChatHead(newId("chat"))).toBeUndefined();
      });

      it("refuses an operation on an unknown chat", async () => {
        const chat = chatRecord(["u-a"]);
        const genesis = change(chat, new Uint8Array(0), 1, { members: ["u-a"], admins: ["u-a"], epoch: 1 });
        await expect(store.applyGroupOperation(chat.chatId, operationDraft(1, "d-a"), genesis)).rejects.toMatchObject({
          code: ErrorCode.ERROR_CODE_NOT_FOUND,
        });
        expect(await store.readGroupOperations(chat.chatId, 0, 10)).toEqual([]);
        expect(await cursorOf(store, chat.chatId, "d-a")).toBeUndefined();
      });
    });

    describe("durability", () => {
      it("keeps everything written after close and reopen", async () => {
        const secret = await store.loadOrCreateServerSecret(bytes(32, 9));
        const { user, device } = newUser();
        await store.createUser(user, device);
        const chat = chatRecord([user.userId, "u-b"]);
        await store.createChat(chat, [device.deviceId, "d-b"]);
        await store.appendMessages(chat.chatId, [draft(1, "d-b"), draft(2, device.deviceId), draft(3, "d-b")]);
        await store.ackDelivered(chat.chatId, device.deviceId, 1);
        await store.ackDelivered(chat.chatId, "d-b", 1);
        await store.close();

        const reopened = await fixture.reopen();
        expect(await reopened.loadOrCreateServerSecret(bytes(32, 10))).toEqual(secret);
        expect(await reopened.getUser(user.userId)).toEqual(user);
        expect(await reopened.getDevice(device.deviceId)).toEqual(device);
        expect(await reopened.listUserDevices(user.userId)).toEqual([device]);
        expect(await reopened.getChat(chat.chatId)).toEqual(stored(chat, 3));
        expect(await reopened.listUserChatIds("u-b")).toEqual([chat.chatId]);
        expect(sortCursors(await reopened.getCursors(chat.chatId))).toEqual(
          sortCursors([cursor(device.deviceId, 1), cursor("d-b", 1)]),
        );
        expect((await reopened.readMessages(chat.chatId, 0, 10)).map((m) => m.messageId)).toEqual([
          messageId(2),
          messageId(3),
        ]);
        expect(await reopened.appendMessages(chat.chatId, [draft(1, "d-c"), draft(4, "d-c")])).toEqual([
          duplicate(1, "d-b"),
          appended(4),
        ]);
      });

      it("commits appends submitted before close", async () => {
        const chatId = await newChat(store, []);
        const pending = store.appendMessages(chatId, [draft(1, "d-a"), draft(2, "d-a")]);
        await store.close();
        expect(await pending).toEqual([appended(1), appended(2)]);
        const reopened = await fixture.reopen();
        expect(seqs(await reopened.readMessages(chatId, 0, 10))).toEqual([1, 2]);
      });
    });
  });
}

interface DraftSpec {
  id: number;
  sender: string;
}

/** A few batches over a small id pool, so repeats within and across batches are common. */
function batchesArbitrary(): fc.Arbitrary<DraftSpec[][]> {
  const spec = fc.record({ id: fc.integer({ min: 0, max: 11 }), sender: fc.constantFrom("d-0", "d-1", "d-2") });
  return fc.array(fc.array(spec, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 8 });
}

/**
 * What any interleaving of `batches` must produce: each distinct id gets one seq,
 * the seqs are exactly 1..n, each id is appended once and reported as a
 * duplicate of that append everywhere else, and each batch's appends ascend.
 */
async function expectConsistentOutcomes(
  store: Store,
  chatId: string,
  batches: readonly (readonly DraftSpec[])[],
  outcomes: readonly AppendOutcome[][],
): Promise<void> {
  const firstAppend = new Map<number, { seq: number; sender: string }>();
  batches.forEach((batch, b) => {
    const batchOutcomes = outcomes[b] ?? [];
    expect(batchOutcomes).toHaveLength(batch.length);
    let lastAppendedSeq = 0;
    batch.forEach(({ id, sender }, i) => {
      const outcome = batchOutcomes[i];
      if (outcome?.kind !== "appended") return;
      expect(firstAppend.has(id)).toBe(false);
      firstAppend.set(id, { seq: outcome.seq, sender });
      expect(outcome.seq).toBeGreaterThan(lastAppendedSeq);
      lastAppendedSeq = outcome.seq;
    });
  });
  const distinctIds = new Set(batches.flat().map(({ id }) => id));
  expect(firstAppend.size).toBe(distinctIds.size);
  expect([...firstAppend.values()].map(({ seq }) => seq).sort((a, b) => a - b)).toEqual(
    Array.from({ length: distinctIds.size }, (_, i) => i + 1),
  );
  batches.forEach((batch, b) => {
    batch.forEach(({ id }, i) => {
      const outcome = outcomes[b]?.[i];
      const first = firstAppend.get(id);
      expect(outcome?.seq).toBe(first?.seq);
      if (outcome?.kind === "duplicate") expect(outcome.senderDeviceId).toBe(first?.sender);
    });
  });
  const byseq = [...firstAppend.entries()].sort((a, b) => a[1].seq - b[1].seq).map(([id]) => id);
  await expectStoredIds(store, chatId, byseq);
}

/** The chat holds exactly these message ids at seqs 1..n, and its head is n. */
/** The device's cursor in the chat (getDeliveryCursor's throughSeq); undefined without one. */
async function cursorOf(store: Store, chatId: string, deviceId: string): Promise<number | undefined> {
  return (await store.getDeliveryCursor(chatId, deviceId))?.throughSeq;
}

async function expectStoredIds(store: Store, chatId: string, idsInSeqOrder: readonly number[]): Promise<void> {
  const stored = await store.readMessages(chatId, 0, idsInSeqOrder.length + 10);
  expect(seqs(stored)).toEqual(idsInSeqOrder.map((_, i) => i + 1));
  expect(stored.map((message) => message.messageId)).toEqual(idsInSeqOrder.map(messageId));
  expect((await store.getChat(chatId))?.headSeq).toBe(idsInSeqOrder.length);
}

async function newChat(store: Store, deviceIds: readonly string[]): Promise<string> {
  const chat = chatRecord(["u-a", "u-b"]);
  await store.createChat(chat, deviceIds);
  return chat.chatId;
}

/** A chat whose `count` messages came from a device without a cursor, so no cursor moved. */
async function chatWithMessages(store: Store, deviceIds: readonly string[], count: number): Promise<string> {
  const chatId = await newChat(store, deviceIds);
  await store.appendMessages(
    chatId,
    Array.from({ length: count }, (_, i) => draft(i + 1, "d-outsider")),
  );
  return chatId;
}

function chatRecord(memberUserIds: string[]): ChatRecord {
  return {
    chatId: newId("chat"),
    kind: ChatKind.CHAT_KIND_GROUP,
    title: "contract",
    memberUserIds,
    createdByUserId: memberUserIds[0] ?? "u-a",
    createdAtMs: 1_700_000_000_000,
    adminUserIds: [],
    epoch: 0,
  };
}

/** A group as getChat returns it before any operation. */
function stored(chat: ChatRecord, headSeq: number): ChatState {
  return { ...chat, headSeq, lastOperationHash: new Uint8Array(0), lastOperationSeq: 0 };
}

function newUser(): { user: UserRecord; device: DeviceRecord } {
  const userId = newId("user");
  return {
    user: { userId, displayName: "Ada", createdAtMs: 1_700_000_000_001 },
    device: { deviceId: newId("device"), userId, identityKey: bytes(32, 200), createdAtMs: 1_700_000_000_002 },
  };
}

/** Message id n: 16 bytes holding n, so tests can name ids by number. */
function messageId(n: number): Uint8Array {
  const id = new Uint8Array(16);
  new DataView(id.buffer).setUint32(12, n);
  return id;
}

/** Draft number n from `senderDeviceId`: adapter tests make their fixtures with it too. */
export function draft(n: number, senderDeviceId: string): MessageDraft {
  return {
    messageId: messageId(n),
    senderUserId: "u-a",
    senderDeviceId,
    serverTimeMs: 1_700_000_000_000 + n,
    payload: bytes(16, n % 256),
    devicePayloads: [],
  };
}

function toDrafts(batch: readonly DraftSpec[]): MessageDraft[] {
  return batch.map(({ id, sender }) => draft(id, sender));
}

function bytes(length: number, fill: number): Uint8Array {
  return new Uint8Array(length).fill(fill);
}

function appended(seq: number): AppendOutcome {
  // Whether the sender caught up is checked by the sender-cursor tests.
  return expect.objectContaining({ kind: "appended", seq }) as AppendOutcome;
}

function duplicate(seq: number, senderDeviceId: string): AppendOutcome {
  return { kind: "duplicate", seq, senderDeviceId };
}

function cursor(deviceId: string, throughSeq: number): { deviceId: string; throughSeq: number } {
  return { deviceId, throughSeq };
}

function sortCursors<T extends { deviceId: string }>(cursors: T[]): T[] {
  return [...cursors].sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
}

function seqs(messages: readonly Message[]): number[] {
  return messages.map((message) => message.seq);
}
