/** The DirectoryStore contract: every ClientStore adapter runs it (client-store-contract.ts). */
import { describe, expect, it } from "vitest";
import { CHAT_A, CHAT_B, type OpenStoreFixture, received, useStoreFixtures } from "./store-contract-fixture.ts";

export function directoryStoreContract(name: string, open: OpenStoreFixture): void {
  describe(`DirectoryStore contract: ${name}`, () => {
    const fresh = useStoreFixtures(open);

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

    it("knows a chat a message arrived in, before its summary is saved", async () => {
      const { store } = await fresh();
      expect(await store.hasChat(CHAT_B)).toBe(false);
      await store.saveReceived(received(CHAT_B, 5));
      expect(await store.hasChat(CHAT_B)).toBe(true);
      expect(await store.getChat(CHAT_B)).toBeUndefined();
    });
  });
}
