/** The OutboxStore contract: every ClientStore adapter runs it (client-store-contract.ts). */
import { describe, expect, it } from "vitest";
import { StaleE2eStateError } from "./e2e-state-store.ts";
import {
  blob,
  CHAT_A,
  CHAT_B,
  message,
  type OpenStoreFixture,
  put,
  useStoreFixtures,
} from "./store-contract-fixture.ts";

export function outboxStoreContract(name: string, open: OpenStoreFixture): void {
  describe(`OutboxStore contract: ${name}`, () => {
    const fresh = useStoreFixtures(open);

    it("queues messages in the order they were added, per chat", async () => {
      const { store } = await fresh();
      const a1 = await store.addToOutbox(message(CHAT_A, "a1"));
      const b1 = await store.addToOutbox(message(CHAT_B, "b1"));
      const a2 = await store.addToOutbox(message(CHAT_A, "a2"));
      expect(a1.state).toBe("queued");
      expect(a1.position).toBeLessThan(b1.position);
      expect(b1.position).toBeLessThan(a2.position);
      expect((await store.nextQueued(CHAT_A))?.messageId).toBe(a1.messageId);
      expect(await store.chatsWithQueued(10)).toEqual([CHAT_A, CHAT_B]);
      expect(await store.chatsWithQueued(1)).toEqual([CHAT_A]);
      expect(await store.countOutbox("queued")).toBe(3);
      expect((await store.getOutboxEntry(a2.messageId))?.content).toEqual(a2.content);
      await store.markSent(a1.messageId, 1);
      expect((await store.nextQueued(CHAT_A))?.messageId).toBe(a2.messageId);
      expect((await store.listOutbox({ limit: 10 })).map((e) => e.messageId)).toEqual([
        a1.messageId,
        b1.messageId,
        a2.messageId,
      ]);
      expect((await store.listOutbox({ states: ["queued"], limit: 1 })).map((e) => e.messageId)).toEqual([
        b1.messageId,
      ]);
    });

    it("lists one chat's entries, oldest first, within the states and the limit asked for", async () => {
      const { store } = await fresh();
      const a1 = await store.addToOutbox(message(CHAT_A, "a1"));
      const b1 = await store.addToOutbox(message(CHAT_B, "b1"));
      const a2 = await store.addToOutbox(message(CHAT_A, "a2"));
      const a3 = await store.addToOutbox(message(CHAT_A, "a3"));
      await store.markSent(a2.messageId, 1);
      const ids = async (query: Parameters<typeof store.listOutbox>[0]): Promise<string[]> =>
        (await store.listOutbox(query)).map((e) => e.messageId);
      expect(await ids({ chatId: CHAT_A, limit: 10 })).toEqual([a1.messageId, a2.messageId, a3.messageId]);
      expect(await ids({ chatId: CHAT_A, limit: 2 })).toEqual([a1.messageId, a2.messageId]);
      expect(await ids({ chatId: CHAT_A, states: ["queued"], limit: 10 })).toEqual([a1.messageId, a3.messageId]);
      expect(await ids({ chatId: CHAT_B, states: ["sent"], limit: 10 })).toEqual([]);
      expect(await ids({ chatId: CHAT_B, limit: 10 })).toEqual([b1.messageId]);
      expect(await ids({ chatId: "cnonenonenonenonenonenonen0", limit: 10 })).toEqual([]);
    });

    it("refuses a message id added twice", async () => {
      const { store } = await fresh();
      const m = message(CHAT_A);
      await store.addToOutbox(m);
      await expect(store.addToOutbox(m)).rejects.toThrow();
      expect(await store.countOutbox("queued")).toBe(1);
    });

    it("moves states forward only: queued → sent → delivered, queued → failed", async () => {
      const { store } = await fresh();
      const m = await store.addToOutbox(message(CHAT_A));
      const problem = { code: "UNAVAILABLE", message: "busy", atMs: 9 };
      expect(await store.markProblem(m.messageId, problem)).toMatchObject({ state: "queued", problem });
      expect(await store.markSent(m.messageId, 4)).toMatchObject({ state: "sent", seq: 4, problem: undefined });
      expect(await store.markSent(m.messageId, 4)).toBeUndefined();
      expect(await store.markFailed(m.messageId, problem)).toBeUndefined();
      expect(await store.markProblem(m.messageId, problem)).toBeUndefined();
      expect((await store.applyReceipt(CHAT_A, 3)).length).toBe(0);
      expect((await store.applyReceipt(CHAT_A, 4)).map((e) => e.state)).toEqual(["delivered"]);
      expect(await store.markSent(m.messageId, 4)).toBeUndefined();
      expect((await store.getOutboxEntry(m.messageId))?.state).toBe("delivered");

      const f = await store.addToOutbox(message(CHAT_A));
      const refusal = { code: "NOT_FOUND", message: "no chat", atMs: 10 };
      expect(await store.markFailed(f.messageId, refusal)).toMatchObject({ state: "failed", problem: refusal });
      expect(await store.markSent(f.messageId, 5)).toBeUndefined();
      expect(await store.countOutbox("failed")).toBe(1);
      expect(await store.nextQueued(CHAT_A)).toBeUndefined();
    });

    it("delivers at once a message whose seq a receipt covered before it was marked sent", async () => {
      const { store } = await fresh();
      const m = await store.addToOutbox(message(CHAT_B));
      expect(await store.applyReceipt(CHAT_B, 7)).toEqual([]);
      expect((await store.markSent(m.messageId, 6))?.state).toBe("delivered");
      const later = await store.addToOutbox(message(CHAT_B));
      expect((await store.markSent(later.messageId, 8))?.state).toBe("sent");
    });

    it("lets two handles on one profile work at once", async () => {
      const fixture = await fresh();
      if (fixture.openSibling === undefined) return; // single-handle adapter
      const sibling = await fixture.openSibling();
      try {
        const writes = [];
        for (let i = 0; i < 20; i++) {
          writes.push(fixture.store.addToOutbox(message(CHAT_A)), sibling.addToOutbox(message(CHAT_A)));
        }
        const entries = await Promise.all(writes);
        expect(new Set(entries.map((e) => e.position)).size).toBe(40);
        expect(await sibling.countOutbox("queued")).toBe(40);
        const [first] = entries;
        if (first === undefined) throw new Error("no outbox entry was written");
        expect(await fixture.store.markSent(first.messageId, 1)).toBeDefined();
        expect(await sibling.markSent(first.messageId, 1)).toBeUndefined();
      } finally {
        await sibling.close();
      }
    });

    it("seals a queued message once, with its writes, and never replaces the sealed bytes", async () => {
      const { store } = await fresh();
      const entry = await store.addToOutbox(message(CHAT_A));
      expect(entry.sealed).toBeUndefined();
      const first = await store.sealOutboxEntry(entry.messageId, blob(7), [put("session/d1", 0, 1)]);
      expect(first?.sealed).toEqual(blob(7));
      expect(await store.sealOutboxEntry(entry.messageId, blob(8), [put("session/d1", 1, 2)])).toBeUndefined();
      expect((await store.getOutboxEntry(entry.messageId))?.sealed).toEqual(blob(7));
      expect((await store.readE2e(["session/d1"])).get("session/d1")?.version).toBe(1);
      expect((await store.nextQueued(CHAT_A))?.sealed).toEqual(blob(7));
    });

    it("reseals a queued message only over the bytes it read, with its writes, all or nothing", async () => {
      const { store } = await fresh();
      const entry = await store.addToOutbox({ ...message(CHAT_A), sealed: blob(7) });
      expect(
        await store.resealOutboxEntry(entry.messageId, blob(6), blob(8), [put("session/d2", 0, 1)]),
      ).toBeUndefined();
      expect((await store.readE2e(["session/d2"])).size).toBe(0);
      await expect(
        store.resealOutboxEntry(entry.messageId, blob(7), blob(8), [put("session/d2", 1, 1)]),
      ).rejects.toBeInstanceOf(StaleE2eStateError);
      expect((await store.getOutboxEntry(entry.messageId))?.sealed).toEqual(blob(7));
      const resealed = await store.resealOutboxEntry(entry.messageId, blob(7), blob(8), [put("session/d2", 0, 1)]);
      expect(resealed?.sealed).toEqual(blob(8));
      expect((await store.nextQueued(CHAT_A))?.sealed).toEqual(blob(8));
      expect((await store.readE2e(["session/d2"])).get("session/d2")?.version).toBe(1);
      // Once sent, the bytes are final.
      await store.markSent(entry.messageId, 1);
      expect(await store.resealOutboxEntry(entry.messageId, blob(8), blob(9), [])).toBeUndefined();
      expect((await store.getOutboxEntry(entry.messageId))?.sealed).toEqual(blob(8));
    });
  });
}
