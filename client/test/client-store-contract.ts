/**
 * The one contract suite of the ClientStore port. Every adapter (memory,
 * SQLite, later IndexedDB) runs it, so the session can rely on the port's
 * invariants whatever it runs on.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  type ClientStore,
  type E2eWrite,
  type NewOutboxMessage,
  type ReceivedMessage,
  StaleE2eStateError,
} from "@remessenger/client-core";

const blob = (n: number): Uint8Array => new Uint8Array(8).fill(n);
const put = (key: string, expectedVersion: number, n: number): E2eWrite => ({ key, expectedVersion, value: blob(n) });

export interface StoreFixture {
  store: ClientStore;
  /** Opens the same storage again (a restart); undefined when it does not persist. */
  reopen: (() => Promise<ClientStore>) | undefined;
  /** A second, concurrent handle on the same storage (another process); undefined when impossible. */
  openSibling: (() => Promise<ClientStore>) | undefined;
  dispose(): Promise<void>;
}

const CHAT_A = "caaaaaaaaaaaaaaaaaaaaaaaaaa";
const CHAT_B = "cbbbbbbbbbbbbbbbbbbbbbbbbbb";

let counter = 0;
function message(chatId: string, text = "hi"): NewOutboxMessage {
  counter += 1;
  return {
    messageId: counter.toString(16).padStart(32, "0"),
    chatId,
    content: { body: { $case: "text", value: text }, composedAtMs: 1000 + counter },
    createdAtMs: 2000 + counter,
  };
}

/** `text` null: a message whose payload could not be read. */
function received(chatId: string, seq: number, text: string | null = `m${seq}`): ReceivedMessage {
  return {
    chatId,
    seq,
    messageId: (seq + 0xabc000).toString(16).padStart(32, "0"),
    senderUserId: "uaaaaaaaaaaaaaaaaaaaaaaaaaa",
    senderDeviceId: "daaaaaaaaaaaaaaaaaaaaaaaaaa",
    serverTimeMs: 5000 + seq,
    content: text === null ? undefined : { body: { $case: "text", value: text }, composedAtMs: 7 },
  };
}

export function clientStoreContract(name: string, open: () => Promise<StoreFixture>): void {
  describe(`ClientStore contract: ${name}`, () => {
    let fixtures: StoreFixture[] = [];
    const fresh = async (): Promise<StoreFixture> => {
      const fixture = await open();
      fixtures.push(fixture);
      return fixture;
    };
    afterEach(async () => {
      for (const fixture of fixtures) await fixture.dispose();
      fixtures = [];
    });

    it("keeps the profile", async () => {
      const { store } = await fresh();
      expect(await store.getProfile()).toBeUndefined();
      const profile = { serverUrl: "http://x", userId: "u1", deviceId: "d1", displayName: "Ann", registeredAtMs: 3 };
      await store.saveProfile(profile);
      expect(await store.getProfile()).toEqual(profile);
      await store.saveProfile({ ...profile, serverUrl: "http://y" });
      expect((await store.getProfile())?.serverUrl).toBe("http://y");
    });

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

    it("caches chats and contacts", async () => {
      const { store } = await fresh();
      expect(await store.hasChat(CHAT_A)).toBe(false);
      const chat = { chatId: CHAT_A, kind: "direct" as const, title: "", memberUserIds: ["u1", "u2"] };
      await store.saveChats([chat]);
      await store.saveChats([{ ...chat, title: "renamed" }]);
      expect(await store.getChat(CHAT_A)).toEqual({ ...chat, title: "renamed" });
      expect(await store.hasChat(CHAT_A)).toBe(true);
      expect(await store.listChats()).toHaveLength(1);
      await store.saveContacts([{ userId: "u2", displayName: "Bo" }]);
      await store.saveContacts([{ userId: "u2", displayName: "Bob" }]);
      expect(await store.listContacts()).toEqual([{ userId: "u2", displayName: "Bob" }]);
    });

    it("keeps everything across a restart", async () => {
      const fixture = await fresh();
      if (fixture.reopen === undefined) return; // this adapter does not persist: nothing to check
      const m = await fixture.store.addToOutbox(message(CHAT_A));
      await fixture.store.saveReceived(received(CHAT_B, 2));
      await fixture.store.close();
      const again = await fixture.reopen();
      try {
        expect((await again.nextQueued(CHAT_A))?.messageId).toBe(m.messageId);
        expect(await again.highestReceivedSeqs()).toEqual(new Map([[CHAT_B, 2]]));
        const next = await again.addToOutbox(message(CHAT_A));
        expect(next.position).toBeGreaterThan(m.position);
      } finally {
        await again.close();
      }
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
        const first = entries[0]!;
        expect(await fixture.store.markSent(first.messageId, 1)).toBeDefined();
        expect(await sibling.markSent(first.messageId, 1)).toBeUndefined();
      } finally {
        await sibling.close();
      }
    });

    it("versions E2E records and applies a write set all or nothing", async () => {
      const { store } = await fresh();
      await store.writeE2e([put("session/d1", 0, 1), put("prekeys", 0, 2)]);
      const read = await store.readE2e(["session/d1", "prekeys", "session/d2"]);
      expect([...read.entries()].sort()).toEqual([
        ["prekeys", { version: 1, value: blob(2) }],
        ["session/d1", { version: 1, value: blob(1) }],
      ]);
      // One stale write spoils the set: nothing of it is applied.
      await expect(store.writeE2e([put("session/d1", 1, 3), put("prekeys", 0, 4)])).rejects.toBeInstanceOf(
        StaleE2eStateError,
      );
      expect((await store.readE2e(["session/d1"])).get("session/d1")).toEqual({ version: 1, value: blob(1) });
      await store.writeE2e([{ key: "prekeys", expectedVersion: 1, value: undefined }, put("session/d2", 0, 5)]);
      expect(await store.listE2eKeys("session/")).toEqual(["session/d1", "session/d2"]);
      expect(await store.listE2eKeys("prekeys")).toEqual([]);
    });

    it("commits a message's E2E writes with its outbox insert or its receipt, or neither", async () => {
      const { store } = await fresh();
      await store.writeE2e([put("session/d1", 0, 1)]);
      const stale = message(CHAT_A);
      await expect(store.addToOutbox({ ...stale, sealed: blob(9) }, [put("session/d1", 0, 2)])).rejects.toBeInstanceOf(
        StaleE2eStateError,
      );
      expect(await store.getOutboxEntry(stale.messageId)).toBeUndefined();
      const sealed = await store.addToOutbox({ ...message(CHAT_A), sealed: blob(9) }, [put("session/d1", 1, 2)]);
      expect(sealed.sealed).toEqual(blob(9));
      expect((await store.readE2e(["session/d1"])).get("session/d1")?.version).toBe(2);

      await expect(store.saveReceived(received(CHAT_B, 1), [put("session/d1", 1, 3)])).rejects.toBeInstanceOf(
        StaleE2eStateError,
      );
      expect(await store.hasReceived(CHAT_B, 1)).toBe(false);
      expect(await store.saveReceived(received(CHAT_B, 1), [put("session/d1", 2, 3)])).toBe(true);
      // A message stored already applies nothing (another process opened it first).
      expect(await store.saveReceived(received(CHAT_B, 1), [put("session/d1", 3, 4)])).toBe(false);
      expect((await store.readE2e(["session/d1"])).get("session/d1")).toEqual({ version: 3, value: blob(3) });
      const problem = { ...received(CHAT_B, 2, null), problem: "undecryptable: no-session" };
      await store.saveReceived(problem);
      expect((await store.listReceived(CHAT_B, 1, 5))[0]?.problem).toBe("undecryptable: no-session");
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

    it("sees another handle's E2E writes and refuses a write based on what it replaced", async () => {
      const fixture = await fresh();
      if (fixture.openSibling === undefined) return; // single-handle adapter
      const sibling = await fixture.openSibling();
      try {
        await fixture.store.writeE2e([put("session/d1", 0, 1)]);
        await sibling.writeE2e([put("session/d1", 1, 2)]);
        await expect(fixture.store.writeE2e([put("session/d1", 1, 3)])).rejects.toBeInstanceOf(StaleE2eStateError);
        expect((await fixture.store.readE2e(["session/d1"])).get("session/d1")).toEqual({ version: 2, value: blob(2) });
      } finally {
        await sibling.close();
      }
    });
  });
}
