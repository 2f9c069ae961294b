import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DatabaseSync } from "node:sqlite";
import { newId, ChatKind } from "@remessenger/protocol";
import { DATABASE_FILE_NAME, SCHEMA_VERSION } from "./sqlite-schema.ts";
import { SqliteStore } from "./sqlite-store.ts";
import { describeStoreContract, draft, type StoreFixture } from "./store-contract.ts";
import type { Store } from "./store.ts";

async function openSqliteFixture(): Promise<StoreFixture> {
  const dataDir = await mkdtemp(join(tmpdir(), "remessenger-sqlite-"));
  const opened: Store[] = [await SqliteStore.open({ dataDir })];
  return {
    store: opened[0]!,
    reopen: async () => {
      const store = await SqliteStore.open({ dataDir });
      opened.push(store);
      return store;
    },
    cleanup: async () => {
      await Promise.all(opened.map((store) => store.close()));
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

describeStoreContract("SqliteStore", openSqliteFixture);

describe("SqliteStore", () => {
  let dataDir: string;

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "remessenger-sqlite-"));
  });

  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it("commits appends from many chats arriving together in far fewer transactions", async () => {
    const store = await SqliteStore.open({ dataDir });
    try {
      const chatIds = await Promise.all(Array.from({ length: 200 }, () => createChat(store)));
      const before = store.stats.commits;
      const outcomes = await Promise.all(chatIds.map((chatId, i) => store.appendMessages(chatId, [draft(i, "d-a")])));
      expect(outcomes.every((outcome) => outcome[0]?.seq === 1)).toBe(true);
      expect(store.stats.commits - before).toBeLessThanOrEqual(10);
    } finally {
      await store.close();
    }
  });

  it("records its schema version and refuses a database from a newer server", async () => {
    const store = await SqliteStore.open({ dataDir });
    await store.close();
    const db = new DatabaseSync(join(dataDir, DATABASE_FILE_NAME));
    expect(db.prepare("PRAGMA user_version").get()).toEqual({ user_version: SCHEMA_VERSION });
    expect(db.prepare("PRAGMA journal_mode").get()).toEqual({ journal_mode: "wal" });
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    await expect(SqliteStore.open({ dataDir })).rejects.toThrow(/newer than this server/);
  });

  it("keeps every acknowledged append after the process is killed mid-stream", async () => {
    const child = spawn(process.execPath, [new URL("./sqlite-crash-child.ts", import.meta.url).pathname, dataDir], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<void>((resolve) => {
      child.once("exit", () => {
        resolve();
      });
    });
    // Each line is "chatId seq messageIdHex": an append the child saw resolve.
    const acknowledged: { chatId: string; seq: number; messageIdHex: string }[] = [];
    const lines = createInterface({ input: child.stdout });
    for await (const line of lines) {
      const [chatId, seq, messageIdHex] = line.split(" ");
      acknowledged.push({ chatId: chatId!, seq: Number(seq), messageIdHex: messageIdHex! });
      if (acknowledged.length === 3_000) {
        child.kill("SIGKILL");
        break;
      }
    }
    await exited;
    expect(child.signalCode).toBe("SIGKILL");

    const store = await SqliteStore.open({ dataDir });
    try {
      const byChat = Map.groupBy(acknowledged, (entry) => entry.chatId);
      for (const [chatId, entries] of byChat) {
        const chat = await store.getChat(chatId);
        const stored = await store.readMessages(chatId, 0, 1_000_000);
        expect(stored.map((message) => message.seq)).toEqual(
          Array.from({ length: chat?.headSeq ?? -1 }, (_, i) => i + 1),
        );
        const storedIds = stored.map((message) => Buffer.from(message.messageId).toString("hex"));
        expect(new Set(storedIds).size).toBe(storedIds.length);
        for (const entry of entries) expect(storedIds[entry.seq - 1]).toBe(entry.messageIdHex);
      }
    } finally {
      await store.close();
    }
    const db = new DatabaseSync(join(dataDir, DATABASE_FILE_NAME), { readOnly: true });
    expect(db.prepare("PRAGMA integrity_check").get()).toEqual({ integrity_check: "ok" });
    db.close();
  });
});

async function createChat(store: Store): Promise<string> {
  const chatId = newId("chat");
  await store.createChat(
    {
      chatId,
      kind: ChatKind.CHAT_KIND_DIRECT,
      title: "",
      memberUserIds: ["u-a", "u-b"],
      createdByUserId: "u-a",
      createdAtMs: 1,
    },
    [],
  );
  return chatId;
}
