/** The TimelineStore contract: every ClientStore adapter runs it (client-store-contract.ts). */
import { describe, expect, it } from "vitest";
import type { ReceivedMessage } from "./timeline-store.ts";
import {
  CHAT_A,
  CHAT_B,
  CHAT_C,
  message,
  type OpenStoreFixture,
  received,
  useStoreFixtures,
} from "./store-contract-fixture.ts";

const ME = "ummmmmmmmmmmmmmmmmmmmmmmmmm";
const PROFILE = { serverUrl: "http://x", userId: ME, deviceId: "d1", displayName: "Me", registeredAtMs: 1 };

/** Records the session stores but never shows, and ones it shows, at the seqs given. */
function controlAndShown(chatId: string): ReceivedMessage[] {
  const distribution = { chatId, epoch: 1, iteration: 0, chainKey: new Uint8Array(32), signingKey: new Uint8Array(32) };
  return [
    received(chatId, 1, "other's"),
    { ...received(chatId, 2, "mine, from my other device"), senderUserId: ME },
    { ...received(chatId, 3, null) }, // a group's pairwise key distribution: no content, no problem
    { ...received(chatId, 4), content: { body: { $case: "senderKey", value: distribution }, composedAtMs: 1 } },
    { ...received(chatId, 5, null), problem: "undecryptable: no-session" },
    received(chatId, 6, "other's again"),
    {
      ...received(chatId, 7),
      content: {
        body: { $case: "senderKeyRequest", value: { chatId, epoch: 1, targetDeviceId: "d" } },
        composedAtMs: 1,
      },
    },
  ];
}

export function timelineStoreContract(name: string, open: OpenStoreFixture): void {
  describe(`TimelineStore contract: ${name}`, () => {
    const fresh = useStoreFixtures(open);

    it("stores a received message once per (chat, seq) and tracks the highest seq per chat", async () => {
      const { store } = await fresh();
      expect(await store.saveReceived(received(CHAT_A, 1))).toBe(true);
      expect(await store.saveReceived(received(CHAT_A, 1, "other"))).toBe(false);
      expect(await store.saveReceived(received(CHAT_A, 3))).toBe(true);
      expect(await store.saveReceived(received(CHAT_A, 2, null))).toBe(true);
      expect(await store.saveReceived(received(CHAT_B, 5))).toBe(true);
      expect(await store.highestReceivedSeqs()).toEqual(
        new Map([
          [CHAT_A, 3],
          [CHAT_B, 5],
        ]),
      );
      const list = await store.listReceived(CHAT_A, 0, 10);
      expect(list.map((m) => m.seq)).toEqual([1, 2, 3]);
      expect(list[0]).toEqual(received(CHAT_A, 1));
      expect(list[1]?.content).toBeUndefined();
      expect((await store.listReceived(CHAT_A, 1, 1)).map((m) => m.seq)).toEqual([2]);
      expect(await store.hasChat(CHAT_B)).toBe(true);
    });

    it("pages back before a seq: the highest seqs below it, in seq order", async () => {
      const { store } = await fresh();
      for (const seq of [1, 2, 3, 4, 5, 6]) await store.saveReceived(received(CHAT_A, seq));
      await store.saveReceived(received(CHAT_B, 2));
      const seqs = async (beforeSeq: number, limit: number): Promise<number[]> =>
        (await store.listReceivedBefore(CHAT_A, beforeSeq, limit)).map((m) => m.seq);
      expect(await seqs(5, 2)).toEqual([3, 4]);
      expect(await seqs(3, 10)).toEqual([1, 2]);
      expect(await seqs(1, 10)).toEqual([]);
      expect(await seqs(100, 3)).toEqual([4, 5, 6]);
      expect(await seqs(100, 0)).toEqual([]);
      expect((await store.listReceivedBefore(CHAT_A, 2, 1))[0]).toEqual(received(CHAT_A, 1));
      expect(await store.listReceivedBefore(CHAT_C, 100, 10)).toEqual([]);
    });

    it("moves the read mark forward only", async () => {
      const { store } = await fresh();
      await store.saveReceived(received(CHAT_A, 1));
      expect(await store.markRead(CHAT_A, 0)).toBe(false);
      expect(await store.markRead(CHAT_A, 3)).toBe(true);
      expect(await store.markRead(CHAT_A, 2)).toBe(false);
      expect(await store.markRead(CHAT_A, 3)).toBe(false);
      expect(await store.markRead(CHAT_A, 5)).toBe(true);
      const [activity] = await store.chatActivity();
      expect(activity?.readThroughSeq).toBe(5);
    });

    it("counts as unread only messages a user sees, from other users, above the read mark", async () => {
      const { store } = await fresh();
      await store.saveProfile(PROFILE);
      for (const m of controlAndShown(CHAT_A)) expect(await store.saveReceived(m)).toBe(true);
      const unread = async (): Promise<number | undefined> =>
        (await store.chatActivity()).find((a) => a.chatId === CHAT_A)?.unreadCount;
      // seq 1, 5 (undecryptable, shown with its reason) and 6; not mine (2) nor control records (3, 4, 7).
      expect(await unread()).toBe(3);
      await store.markRead(CHAT_A, 5);
      expect(await unread()).toBe(1);
      await store.saveReceived({ ...received(CHAT_A, 8, "mine again"), senderUserId: ME });
      expect(await unread()).toBe(1);
      await store.markRead(CHAT_A, 8);
      expect(await unread()).toBe(0);
    });

    it("summarises every chat in one call: saved, received in, or written in", async () => {
      const { store } = await fresh();
      await store.saveProfile(PROFILE);
      await store.saveChats([{ chatId: CHAT_C, kind: "group", title: "empty", memberUserIds: [ME] }]);
      for (const m of controlAndShown(CHAT_A)) await store.saveReceived(m);
      const b1 = await store.addToOutbox(message(CHAT_B, "b1"));
      const b2 = await store.addToOutbox(message(CHAT_B, "b2"));
      await store.markSent(b1.messageId, 1);
      await store.markSent(b2.messageId, 2);
      const b3 = await store.addToOutbox(message(CHAT_B, "b3"));

      const activity = await store.chatActivity();
      expect(activity.map((a) => a.chatId)).toEqual([CHAT_A, CHAT_B, CHAT_C]);
      const [a, b, c] = activity;
      // The newest record a user sees: seq 7 is a control record.
      expect(a).toEqual({
        chatId: CHAT_A,
        lastReceived: controlAndShown(CHAT_A)[5],
        lastOwn: undefined,
        unreadCount: 3,
        readThroughSeq: 0,
      });
      expect(b).toMatchObject({ chatId: CHAT_B, lastReceived: undefined, unreadCount: 0, readThroughSeq: 0 });
      expect(b?.lastOwn).toMatchObject({ messageId: b3.messageId, state: "queued", content: b3.content });
      expect(c).toEqual({
        chatId: CHAT_C,
        lastReceived: undefined,
        lastOwn: undefined,
        unreadCount: 0,
        readThroughSeq: 0,
      });
    });

    it("shows no last message for a chat that received only control records", async () => {
      const { store } = await fresh();
      const [, , keyDistribution, senderKey] = controlAndShown(CHAT_A);
      for (const m of [keyDistribution, senderKey]) if (m !== undefined) await store.saveReceived(m);
      expect(await store.chatActivity()).toEqual([
        { chatId: CHAT_A, lastReceived: undefined, lastOwn: undefined, unreadCount: 0, readThroughSeq: 0 },
      ]);
    });
  });
}
