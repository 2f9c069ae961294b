/**
 * The object stores of IndexedDbClientStore, their upgrades and records.
 *
 * - The database version is the schema version. `upgradeClientDb` runs in
 *   the versionchange transaction, so an upgrade applies whole or not at all,
 *   and every step from the database's version up runs in order:
 *     1: profile (meta), outbox with receipts, received with per-chat cursors,
 *        E2E state, chats, contacts (the port before read state);
 *     2: read marks, the outbox by chat, and which received records a user
 *        sees (`shown`, backfilled from the stored content).
 * - Records hold contents as encoded `Content` protobufs, as the SQLite store
 *   does: a record read back is the one written, whatever the generated
 *   types become. Absent values are null (IndexedDB keeps undefined, but null
 *   says "stored as nothing" plainly).
 * - `shown` is 1 or 0 (booleans are not IndexedDB keys) so an index can hold it.
 */
import { Content } from "@remessenger/protocol";
import { drop } from "../runtime/drop.ts";
import { walk } from "../runtime/indexeddb-request.ts";
import type { OutboxEntry, OutboxProblem, OutboxState } from "./outbox-store.ts";
import { isShownToUser, type ReceivedMessage } from "./timeline-store.ts";

export const DB_VERSION = 2;

export const META = "meta";
export const OUTBOX = "outbox";
export const RECEIPTS = "receipts";
export const RECEIVED = "received";
export const CURSORS = "cursors";
export const READ_MARKS = "readMarks";
export const CHATS = "chats";
export const CONTACTS = "contacts";
export const E2E = "e2e";

/** Outbox indexes: by message id (unique), by state, by [state, chatId, position], by [chatId, position]. */
export const BY_MESSAGE_ID = "messageId";
export const BY_STATE = "state";
export const BY_STATE_CHAT = "stateChat";
export const BY_CHAT = "chat";
/** Received index: [chatId, shown, seq]. */
export const BY_SHOWN = "shown";

export interface OutboxRecord {
  position: number;
  messageId: string;
  chatId: string;
  content: Uint8Array;
  createdAtMs: number;
  state: OutboxState;
  seq: number | null;
  problem: OutboxProblem | null;
  sealed: Uint8Array | null;
}

export interface ReceivedRecord {
  chatId: string;
  seq: number;
  messageId: string;
  senderUserId: string;
  senderDeviceId: string;
  serverTimeMs: number;
  content: Uint8Array | null;
  problem: string | null;
  shown: 0 | 1;
}

/** A chat's mark (receipts, read marks) or its highest received seq (cursors). */
export interface ChatMarkRecord {
  chatId: string;
  throughSeq: number;
}

export interface E2eStateRecord {
  key: string;
  version: number;
  value: Uint8Array;
}

/** Brings a database from `oldVersion` to DB_VERSION inside its versionchange transaction. */
export function upgradeClientDb(db: IDBDatabase, tx: IDBTransaction, oldVersion: number, toVersion = DB_VERSION): void {
  if (oldVersion < 1 && toVersion >= 1) {
    db.createObjectStore(META);
    const outbox = db.createObjectStore(OUTBOX, { keyPath: "position", autoIncrement: true });
    outbox.createIndex(BY_MESSAGE_ID, "messageId", { unique: true });
    outbox.createIndex(BY_STATE, "state");
    outbox.createIndex(BY_STATE_CHAT, ["state", "chatId", "position"]);
    db.createObjectStore(RECEIPTS, { keyPath: "chatId" });
    db.createObjectStore(RECEIVED, { keyPath: ["chatId", "seq"] });
    db.createObjectStore(CURSORS, { keyPath: "chatId" });
    db.createObjectStore(CHATS, { keyPath: "chatId" });
    db.createObjectStore(CONTACTS, { keyPath: "userId" });
    db.createObjectStore(E2E, { keyPath: "key" });
  }
  if (oldVersion < 2 && toVersion >= 2) {
    db.createObjectStore(READ_MARKS, { keyPath: "chatId" });
    tx.objectStore(OUTBOX).createIndex(BY_CHAT, ["chatId", "position"]);
    const received = tx.objectStore(RECEIVED);
    received.createIndex(BY_SHOWN, ["chatId", "shown", "seq"]);
    // The transaction outlives this call until the walk ends; open() resolves only after it commits.
    drop(
      walk(received.openCursor(), (cursor) => {
        const record = cursor.value as Omit<ReceivedRecord, "shown">;
        cursor.update({ ...record, shown: shownFlag(toReceived({ ...record, shown: 1 })) });
        return true;
      }),
      () => {
        // A record that cannot be read: the whole upgrade aborts, and open() rejects with it.
        abortQuietly(tx);
      },
    );
  }
}

/** Aborts `tx` unless it has finished already (a failed request aborts its transaction itself). */
export function abortQuietly(tx: IDBTransaction): void {
  try {
    tx.abort();
  } catch {
    // InvalidStateError: committed or aborted already; nothing left to undo.
  }
}

export function shownFlag(message: ReceivedMessage): 0 | 1 {
  return isShownToUser(message) ? 1 : 0;
}

export function toOutboxRecord(entry: Omit<OutboxEntry, "position">): Omit<OutboxRecord, "position"> {
  return {
    messageId: entry.messageId,
    chatId: entry.chatId,
    content: Content.encode(entry.content).finish().slice(),
    createdAtMs: entry.createdAtMs,
    state: entry.state,
    seq: entry.seq ?? null,
    problem: entry.problem === undefined ? null : { ...entry.problem },
    sealed: entry.sealed?.slice() ?? null,
  };
}

export function toEntry(record: OutboxRecord): OutboxEntry {
  return {
    messageId: record.messageId,
    chatId: record.chatId,
    position: record.position,
    content: Content.decode(record.content),
    createdAtMs: record.createdAtMs,
    state: record.state,
    seq: record.seq ?? undefined,
    problem: record.problem ?? undefined,
    sealed: record.sealed ?? undefined,
  };
}

export function toReceivedRecord(message: ReceivedMessage): ReceivedRecord {
  return {
    chatId: message.chatId,
    seq: message.seq,
    messageId: message.messageId,
    senderUserId: message.senderUserId,
    senderDeviceId: message.senderDeviceId,
    serverTimeMs: message.serverTimeMs,
    content: message.content === undefined ? null : Content.encode(message.content).finish().slice(),
    problem: message.problem ?? null,
    shown: shownFlag(message),
  };
}

export function toReceived(record: ReceivedRecord): ReceivedMessage {
  return {
    chatId: record.chatId,
    seq: record.seq,
    messageId: record.messageId,
    senderUserId: record.senderUserId,
    senderDeviceId: record.senderDeviceId,
    serverTimeMs: record.serverTimeMs,
    content: record.content === null ? undefined : Content.decode(record.content),
    ...(record.problem === null ? {} : { problem: record.problem }),
  };
}
