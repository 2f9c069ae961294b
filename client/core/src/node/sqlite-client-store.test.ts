import { mkdtempSync, rmSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Content } from "@remessenger/protocol";
import { clientStoreContract } from "../store/client-store-contract.ts";
import { SqliteClientStore } from "./sqlite-client-store.ts";

clientStoreContract("SqliteClientStore", () => {
  const dir = mkdtempSync(join(tmpdir(), "remessenger-store-"));
  const path = join(dir, "client.sqlite");
  const store = SqliteClientStore.open(path);
  const opened: SqliteClientStore[] = [store];
  const openAnother = (): Promise<SqliteClientStore> => {
    const another = SqliteClientStore.open(path);
    opened.push(another);
    return Promise.resolve(another);
  };
  return Promise.resolve({
    store,
    reopen: openAnother,
    openSibling: openAnother,
    dispose: async () => {
      for (const handle of opened) await handle.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
});

describe("SqliteClientStore schema", () => {
  it("migrates a schema-2 profile: keeps its messages and marks which ones a user sees", async () => {
    const dir = mkdtempSync(join(tmpdir(), "remessenger-store-"));
    const path = join(dir, "client.sqlite");
    try {
      const old = new DatabaseSync(path);
      old.exec(`
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta (key, value) VALUES ('schema_version', '2');
        CREATE TABLE received (
          chat_id TEXT NOT NULL, seq INTEGER NOT NULL, message_id TEXT NOT NULL, sender_user_id TEXT NOT NULL,
          sender_device_id TEXT NOT NULL, server_time_ms INTEGER NOT NULL, content BLOB, problem TEXT,
          PRIMARY KEY (chat_id, seq)) WITHOUT ROWID;
        CREATE TABLE chat_cursors (chat_id TEXT PRIMARY KEY, highest_seq INTEGER NOT NULL) WITHOUT ROWID;
      `);
      const insert = old.prepare("INSERT INTO received VALUES ('c1', ?, 'm', 'u2', 'd2', 1, ?, ?)");
      const text = Content.encode({ body: { $case: "text", value: "hi" }, composedAtMs: 1 }).finish();
      insert.run(1, text, null);
      insert.run(2, null, null); // a key-distribution record: never shown
      insert.run(3, null, "undecryptable: no-session");
      old.prepare("INSERT INTO chat_cursors VALUES ('c1', 3)").run();
      old.close();

      const store = SqliteClientStore.open(path);
      try {
        expect((await store.listReceived("c1", 0, 10)).map((m) => m.seq)).toEqual([1, 2, 3]);
        const [activity] = await store.chatActivity();
        expect(activity).toMatchObject({ chatId: "c1", unreadCount: 2, readThroughSeq: 0 });
        expect(activity?.lastReceived?.seq).toBe(3);
        expect(await store.markRead("c1", 3)).toBe(true);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
