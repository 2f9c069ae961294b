// IndexedDbClientStore in a real Chromium (vitest browser mode, see vitest.config.ts): every port's
// contract suite on the engine's own IndexedDB, the upgrade from schema 1, and the outbox surviving
// its page. Vitest runs a test file inside its own page, so a real reload would end the test run:
// "the page" here is a same-origin iframe whose realm writes a queued message and is then removed;
// the test's realm opens the store afterwards and finds the message.
import { afterEach, describe, expect, test } from "vitest";
import { request } from "../runtime/indexeddb-request.ts";
import { clientStoreContract } from "./client-store-contract.ts";
import { IndexedDbClientStore } from "./indexeddb-client-store.ts";
import { CURSORS, OUTBOX, RECEIVED, upgradeClientDb } from "./indexeddb-client-schema.ts";
import { Content } from "@remessenger/protocol";

const createdDbs = new Set<string>();

function freshDbName(label: string): string {
  const name = `client-store-test-${label}-${crypto.randomUUID()}`;
  createdDbs.add(name);
  return name;
}

/** Deletes a database; "blocked" only delays it until the last connection has closed. */
async function deleteDb(name: string): Promise<void> {
  await request(indexedDB.deleteDatabase(name));
}

afterEach(async () => {
  for (const name of createdDbs) await deleteDb(name);
  createdDbs.clear();
});

clientStoreContract("IndexedDbClientStore", async () => {
  const name = freshDbName("contract");
  const store = await IndexedDbClientStore.open(name);
  const opened: IndexedDbClientStore[] = [store];
  const openAnother = async (): Promise<IndexedDbClientStore> => {
    const another = await IndexedDbClientStore.open(name);
    opened.push(another);
    return another;
  };
  return {
    store,
    reopen: openAnother,
    openSibling: openAnother,
    dispose: async () => {
      for (const handle of opened) await handle.close();
      await deleteDb(name);
    },
  };
});

const CHAT = "caaaaaaaaaaaaaaaaaaaaaaaaaa";

describe("IndexedDbClientStore", () => {
  test("keeps an outbox across a page reload (a same-origin iframe's realm writes and is removed, this realm reads)", async () => {
    const name = freshDbName("reload");
    const moduleUrl = new URL("./indexeddb-client-store.ts", import.meta.url).href;
    const frame = document.createElement("iframe");
    const written = new Promise<{ messageId: string; position: number }>((resolve, reject) => {
      const onMessage = (event: MessageEvent<{ messageId?: string; position?: number; error?: string }>): void => {
        if (event.source !== frame.contentWindow) return;
        window.removeEventListener("message", onMessage);
        const { messageId, position, error } = event.data;
        if (messageId !== undefined && position !== undefined) resolve({ messageId, position });
        else reject(new Error(`the iframe could not write: ${error ?? "no answer"}`));
      };
      window.addEventListener("message", onMessage);
    });
    // The iframe's own module graph: its store class, its IndexedDB connection, its realm.
    frame.srcdoc = `<script type="module">
      try {
        const { IndexedDbClientStore } = await import(${JSON.stringify(moduleUrl)});
        const store = await IndexedDbClientStore.open(${JSON.stringify(name)});
        const entry = await store.addToOutbox({
          messageId: "0123456789abcdef0123456789abcdef",
          chatId: ${JSON.stringify(CHAT)},
          content: { body: { $case: "text", value: "written before the reload" }, composedAtMs: 1 },
          createdAtMs: 2,
          sealed: new Uint8Array([1, 2, 3, 250]),
        });
        // Resolved means committed: the realm goes without closing the store.
        parent.postMessage({ messageId: entry.messageId, position: entry.position }, "*");
      } catch (error) {
        parent.postMessage({ error: String(error) }, "*");
      }
    </script>`;
    document.body.append(frame);
    const { messageId, position } = await written;
    frame.remove();

    const store = await IndexedDbClientStore.open(name);
    try {
      const entry = await store.nextQueued(CHAT);
      expect(entry).toMatchObject({ messageId, position, state: "queued", chatId: CHAT });
      expect(entry?.content.body).toEqual({ $case: "text", value: "written before the reload" });
      expect(entry?.sealed).toEqual(new Uint8Array([1, 2, 3, 250]));
      expect(await store.chatsWithQueued(10)).toEqual([CHAT]);
    } finally {
      await store.close();
    }
  });

  test("upgrades a schema-1 database: keeps outbox and messages, learns which ones a user sees", async () => {
    const name = freshDbName("upgrade");
    const opening = indexedDB.open(name, 1);
    opening.onupgradeneeded = () => {
      if (opening.transaction === null) throw new Error("no upgrade transaction");
      upgradeClientDb(opening.result, opening.transaction, 0, 1);
    };
    const old = await request(opening);
    const tx = old.transaction([OUTBOX, RECEIVED, CURSORS], "readwrite");
    const text = (value: string): Uint8Array =>
      Content.encode({ body: { $case: "text", value }, composedAtMs: 1 })
        .finish()
        .slice();
    tx.objectStore(OUTBOX).add({
      messageId: "0".repeat(32),
      chatId: CHAT,
      content: text("queued in v1"),
      createdAtMs: 1,
      state: "queued",
      seq: null,
      problem: null,
      sealed: null,
    });
    const v1Received = (seq: number, content: Uint8Array | null, problem: string | null): object => ({
      chatId: CHAT,
      seq,
      messageId: seq.toString(16).padStart(32, "0"),
      senderUserId: "u2",
      senderDeviceId: "d2",
      serverTimeMs: seq,
      content,
      problem,
    });
    tx.objectStore(RECEIVED).add(v1Received(1, text("seen"), null));
    tx.objectStore(RECEIVED).add(v1Received(2, null, null)); // a key distribution: never shown
    tx.objectStore(RECEIVED).add(v1Received(3, null, "undecryptable: no-session"));
    tx.objectStore(CURSORS).add({ chatId: CHAT, throughSeq: 3 });
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => {
        resolve();
      };
      tx.onabort = () => {
        reject(tx.error ?? new Error("v1 write aborted"));
      };
    });
    old.close();

    const store = await IndexedDbClientStore.open(name);
    try {
      expect((await store.nextQueued(CHAT))?.content.body).toEqual({ $case: "text", value: "queued in v1" });
      expect((await store.listReceived(CHAT, 0, 10)).map((m) => m.seq)).toEqual([1, 2, 3]);
      const [activity] = await store.chatActivity();
      expect(activity).toMatchObject({ chatId: CHAT, unreadCount: 2, readThroughSeq: 0 });
      expect(activity?.lastReceived?.seq).toBe(3);
      expect(activity?.lastOwn?.content.body).toEqual({ $case: "text", value: "queued in v1" });
      expect(await store.markRead(CHAT, 3)).toBe(true);
    } finally {
      await store.close();
    }
  });
});
