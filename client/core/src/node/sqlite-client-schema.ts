/**
 * The tables of the SQLite client store, their migrations and their rows.
 *
 * - `meta.schema_version` names the schema; `migrateClientSchema` brings any
 *   older profile database up to SCHEMA_VERSION inside the caller's
 *   transaction, so a crash mid-migration leaves the old schema whole.
 * - `received.shown` caches isShownToUser (the content is stored encoded, so
 *   SQL cannot look into it) for unread counts and a chat's last message;
 *   it is computed once, when a message is saved or migrated.
 */
import type { DatabaseSync } from "node:sqlite";
import { Content } from "@remessenger/protocol";
import {
  type ChatKindName,
  type ChatSummary,
  type OutboxEntry,
  type OutboxState,
  type ReceivedMessage,
  isShownToUser,
} from "../index.ts";

export const SCHEMA_VERSION = 3;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
  position INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id TEXT NOT NULL UNIQUE,
  chat_id TEXT NOT NULL,
  content BLOB NOT NULL,
  created_at_ms INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'delivered', 'failed')),
  seq INTEGER,
  problem_code TEXT,
  problem_message TEXT,
  problem_at_ms INTEGER,
  sealed BLOB
);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, chat_id, position);
CREATE INDEX IF NOT EXISTS outbox_by_chat ON outbox (chat_id, state, seq);
CREATE INDEX IF NOT EXISTS outbox_by_chat_position ON outbox (chat_id, position);
CREATE TABLE IF NOT EXISTS receipts (chat_id TEXT PRIMARY KEY, through_seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS received (
  chat_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  sender_user_id TEXT NOT NULL,
  sender_device_id TEXT NOT NULL,
  server_time_ms INTEGER NOT NULL,
  content BLOB,
  problem TEXT,
  shown INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS received_shown ON received (chat_id, shown, seq);
CREATE TABLE IF NOT EXISTS chat_cursors (chat_id TEXT PRIMARY KEY, highest_seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS read_marks (chat_id TEXT PRIMARY KEY, through_seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chats (
  chat_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  title TEXT NOT NULL,
  members TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contacts (user_id TEXT PRIMARY KEY, display_name TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS e2e_state (key TEXT PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
`;

/** From schema 1 (before E2E): the sealed payload, the undecryptable reason, the E2E state. */
const MIGRATE_1_TO_2 = `
ALTER TABLE outbox ADD COLUMN sealed BLOB;
ALTER TABLE received ADD COLUMN problem TEXT;
CREATE TABLE IF NOT EXISTS e2e_state (key TEXT PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
`;

/** From schema 2: which received records a user sees (read marks and indexes come with SCHEMA). */
function migrate2To3(db: DatabaseSync): void {
  db.exec("ALTER TABLE received ADD COLUMN shown INTEGER NOT NULL DEFAULT 1");
  const rows = db.prepare("SELECT chat_id, seq, content, problem FROM received").iterate() as Iterable<
    Pick<ReceivedRow, "chat_id" | "seq" | "content" | "problem">
  >;
  const hide = db.prepare("UPDATE received SET shown = 0 WHERE chat_id = ? AND seq = ?");
  const hidden: Array<[string, number]> = [];
  for (const row of rows) {
    const content = row.content === null ? undefined : Content.decode(row.content);
    if (!isShownToUser({ content, ...(row.problem === null ? {} : { problem: row.problem }) })) {
      hidden.push([row.chat_id, row.seq]);
    }
  }
  for (const [chatId, seq] of hidden) hide.run(chatId, seq);
}

/** Inside a transaction: brings the schema to SCHEMA_VERSION; the version found, for the caller's check. */
export function migrateClientSchema(db: DatabaseSync): string | undefined {
  const hasMeta = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() !== undefined;
  const found = hasMeta
    ? (db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string } | undefined)?.value
    : undefined;
  if (found === "1") db.exec(MIGRATE_1_TO_2);
  if (found === "1" || found === "2") {
    migrate2To3(db);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(SCHEMA_VERSION));
  }
  db.exec(SCHEMA);
  db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)").run(String(SCHEMA_VERSION));
  const version = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as
    { value: string } | undefined;
  return version?.value;
}

export interface OutboxRow {
  position: number;
  message_id: string;
  chat_id: string;
  content: Uint8Array;
  created_at_ms: number;
  state: OutboxState;
  seq: number | null;
  problem_code: string | null;
  problem_message: string | null;
  problem_at_ms: number | null;
  sealed: Uint8Array | null;
}

export interface ReceivedRow {
  chat_id: string;
  seq: number;
  message_id: string;
  sender_user_id: string;
  sender_device_id: string;
  server_time_ms: number;
  content: Uint8Array | null;
  problem: string | null;
  shown: number;
}

export interface ChatRow {
  chat_id: string;
  kind: ChatKindName;
  title: string;
  members: string;
}

export function toEntry(row: OutboxRow): OutboxEntry {
  return {
    messageId: row.message_id,
    chatId: row.chat_id,
    position: row.position,
    content: Content.decode(row.content),
    createdAtMs: row.created_at_ms,
    state: row.state,
    seq: row.seq ?? undefined,
    problem:
      row.problem_code === null
        ? undefined
        : { code: row.problem_code, message: row.problem_message ?? "", atMs: row.problem_at_ms ?? 0 },
    sealed: row.sealed ?? undefined,
  };
}

export function toReceived(row: ReceivedRow): ReceivedMessage {
  return {
    chatId: row.chat_id,
    seq: row.seq,
    messageId: row.message_id,
    senderUserId: row.sender_user_id,
    senderDeviceId: row.sender_device_id,
    serverTimeMs: row.server_time_ms,
    content: row.content === null ? undefined : Content.decode(row.content),
    ...(row.problem === null ? {} : { problem: row.problem }),
  };
}

export function toChat(row: ChatRow): ChatSummary {
  return { chatId: row.chat_id, kind: row.kind, title: row.title, memberUserIds: JSON.parse(row.members) as string[] };
}
