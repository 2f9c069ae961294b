/**
 * The contract of the whole ClientStore: every port's suite, and what spans
 * ports — a restart keeps everything, and a message's E2E writes commit with
 * it (the one transaction notion, e2e-state-store.ts). Every adapter runs it:
 * memory and SQLite in Node, IndexedDB in Chromium. It ships with the core so
 * an adapter written elsewhere can run it too.
 */
import { describe, expect, it } from "vitest";
import { directoryStoreContract } from "./directory-store-contract.ts";
import { StaleE2eStateError } from "./e2e-state-store.ts";
import { e2eStateStoreContract } from "./e2e-state-store-contract.ts";
import { outboxStoreContract } from "./outbox-store-contract.ts";
import { profileStoreContract } from "./profile-store-contract.ts";
import {
  blob,
  CHAT_A,
  CHAT_B,
  message,
  type OpenStoreFixture,
  put,
  received,
  useStoreFixtures,
} from "./store-contract-fixture.ts";
import { timelineStoreContract } from "./timeline-store-contract.ts";

export type { OpenStoreFixture, StoreFixture } from "./store-contract-fixture.ts";

export function clientStoreContract(name: string, open: OpenStoreFixture): void {
  profileStoreContract(name, open);
  outboxStoreContract(name, open);
  timelineStoreContract(name, open);
  e2eStateStoreContract(name, open);
  directoryStoreContract(name, open);

  describe(`ClientStore contract: ${name}`, () => {
    const fresh = useStoreFixtures(open);

    it("keeps everything across a restart", async () => {
      const fixture = await fresh();
      if (fixture.reopen === undefined) return; // this adapter does not persist: nothing to check
      const m = await fixture.store.addToOutbox(message(CHAT_A));
      await fixture.store.saveReceived(received(CHAT_B, 2));
      await fixture.store.markRead(CHAT_B, 2);
      await fixture.store.close();
      const again = await fixture.reopen();
      try {
        expect((await again.nextQueued(CHAT_A))?.messageId).toBe(m.messageId);
        expect(await again.highestReceivedSeqs()).toEqual(new Map([[CHAT_B, 2]]));
        expect((await again.chatActivity()).find((a) => a.chatId === CHAT_B)?.readThroughSeq).toBe(2);
        const next = await again.addToOutbox(message(CHAT_A));
        expect(next.position).toBeGreaterThan(m.position);
      } finally {
        await again.close();
      }
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
      expect(await store.hasChat(CHAT_B)).toBe(false);
      expect(await store.saveReceived(received(CHAT_B, 1), [put("session/d1", 2, 3)])).toBe(true);
      // A message stored already applies nothing (another process opened it first).
      expect(await store.saveReceived(received(CHAT_B, 1), [put("session/d1", 3, 4)])).toBe(false);
      expect((await store.readE2e(["session/d1"])).get("session/d1")).toEqual({ version: 3, value: blob(3) });
      const problem = { ...received(CHAT_B, 2, null), problem: "undecryptable: no-session" };
      await store.saveReceived(problem);
      expect((await store.listReceived(CHAT_B, 1, 5))[0]?.problem).toBe("undecryptable: no-session");
    });
  });
}
