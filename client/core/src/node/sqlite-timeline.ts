/**
 * The timeline part of the SQLite client store: received messages, each
 * chat's highest received seq (chat_cursors) and read marks, on the tables of
 * sqlite-client-schema.ts. The store runs these inside its transactions.
 *
 * Invariants: a message is stored once per (chat, seq) (`insertReceived`
 * says whether it was new); the cursor and the read mark only move forward,
 * guarded in the upsert itself.
 */
import type { DatabaseSync } from "node:sqlite";
import { Content } from "@remessenger/protocol";
import { type ReceivedMessage, isShownToUser } from "../index.ts";
import { type ReceivedRow, toReceived } from "./sqlite-client-schema.ts";

/** Stores `message` unless one with its (chat, seq) is stored already; whether it was new. */
export function insertReceived(db: DatabaseSync, message: ReceivedMessage): boolean {
  const { changes } = db
    .prepare(
      `INSERT OR IGNORE INTO received
         (chat_id, seq, message_id, sender_user_id, sender_device_id, server_time_ms, content, problem, shown)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(
      message.chatId,
      message.seq,
      message.messageId,
      message.senderUserId,
      message.senderDeviceId,
      message.serverTimeMs,
      message.content === undefined ? null : Content.encode(message.content).finish(),
      message.problem ?? null,
      isShownToUser(message) ? 1 : 0,
    );
  return changes > 0;
}

/** Moves the chat's highest received seq up to `seq` (never down). */
export function raiseCursor(db: DatabaseSync, chatId: string, seq: number): void {
  db.prepare(
    `INSERT INTO chat_cursors (chat_id, highest_seq) VALUES (?, ?)
     ON CONFLICT (chat_id) DO UPDATE SET highest_seq = MAX(highest_seq, excluded.highest_seq)`,
  ).run(chatId, seq);
}

export function hasReceived(db: DatabaseSync, chatId: string, seq: number): boolean {
  return db.prepare("SELECT 1 FROM received WHERE chat_id = ? AND seq = ?").get(chatId, seq) !== undefined;
}

export function highestReceivedSeqs(db: DatabaseSync): Map<string, number> {
  const rows = db.prepare("SELECT chat_id, highest_seq FROM chat_cursors").all() as Array<{
    chat_id: string;
    highest_seq: number;
  }>;
  return new Map(rows.map((r) => [r.chat_id, r.highest_seq]));
}

export function listReceived(db: DatabaseSync, chatId: string, afterSeq: number, limit: number): ReceivedMessage[] {
  const rows = db
    .prepare("SELECT * FROM received WHERE chat_id = ? AND seq > ? ORDER BY seq LIMIT ?")
    .all(chatId, afterSeq, limit) as unknown as ReceivedRow[];
  return rows.map(toReceived);
}

export function listReceivedBefore(
  db: DatabaseSync,
  chatId: string,
  beforeSeq: number,
  limit: number,
): ReceivedMessage[] {
  const rows = db
    .prepare(
      `SELECT * FROM (SELECT * FROM received WHERE chat_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`,
    )
    .all(chatId, beforeSeq, limit) as unknown as ReceivedRow[];
  return rows.map(toReceived);
}

/** Moves the chat's read mark up to `throughSeq`; whether it moved. */
export function markRead(db: DatabaseSync, chatId: string, throughSeq: number): boolean {
  if (throughSeq <= 0) return false;
  const { changes } = db
    .prepare(
      `INSERT INTO read_marks (chat_id, through_seq) VALUES (?, ?)
       ON CONFLICT (chat_id) DO UPDATE SET through_seq = excluded.through_seq
       WHERE excluded.through_seq > read_marks.through_seq`,
    )
    .run(chatId, throughSeq);
  return changes > 0;
}
