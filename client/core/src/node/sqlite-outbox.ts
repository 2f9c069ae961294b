/**
 * The outbox part of the SQLite client store: the single-statement reads and
 * state changes of the outbox table (sqlite-client-schema.ts); the inserts
 * and seals that commit with E2E writes stay in the store's transactions.
 *
 * Invariants: a message leaves "queued" only forward and only once, guarded
 * in SQL (`WHERE state = 'queued'`), so racing processes cannot regress it;
 * each change is one statement, so its checks and its update are atomic.
 */
import type { DatabaseSync, SQLInputValue } from "node:sqlite";
import type { OutboxEntry, OutboxProblem, OutboxQuery, OutboxState } from "../index.ts";
import { type OutboxRow, toEntry } from "./sqlite-client-schema.ts";

/** The entry one statement returns, if any. */
export function oneEntry(
  db: DatabaseSync,
  sql: string,
  ...params: Array<SQLInputValue | Record<string, SQLInputValue>>
): OutboxEntry | undefined {
  const row = db.prepare(sql).get(...(params as SQLInputValue[])) as OutboxRow | undefined;
  return row === undefined ? undefined : toEntry(row);
}

export function nextQueued(db: DatabaseSync, chatId: string): OutboxEntry | undefined {
  return oneEntry(db, "SELECT * FROM outbox WHERE state = 'queued' AND chat_id = ? ORDER BY position LIMIT 1", chatId);
}

export function chatsWithQueued(db: DatabaseSync, limit: number): string[] {
  const rows = db
    .prepare("SELECT chat_id FROM outbox WHERE state = 'queued' GROUP BY chat_id ORDER BY MIN(position) LIMIT ?")
    .all(limit) as Array<{ chat_id: string }>;
  return rows.map((r) => r.chat_id);
}

export function listOutbox(db: DatabaseSync, query: OutboxQuery): OutboxEntry[] {
  const states = query.states ?? ["queued", "sent", "delivered", "failed"];
  const marks = states.map(() => "?").join(", ");
  const inChat = query.chatId === undefined ? "" : "AND chat_id = ?";
  const rows = db
    .prepare(`SELECT * FROM outbox WHERE state IN (${marks}) ${inChat} ORDER BY position LIMIT ?`)
    .all(...states, ...(query.chatId === undefined ? [] : [query.chatId]), query.limit) as unknown as OutboxRow[];
  return rows.map(toEntry);
}

export function countOutbox(db: DatabaseSync, state: OutboxState): number {
  const row = db.prepare("SELECT COUNT(*) AS n FROM outbox WHERE state = ?").get(state) as { n: number };
  return row.n;
}

/** A queued message the server took: "sent", or "delivered" at once when a receipt already covers its seq. */
export function markSent(db: DatabaseSync, messageId: string, seq: number): OutboxEntry | undefined {
  // One statement, so the receipt check and the update are atomic.
  return oneEntry(
    db,
    `UPDATE outbox SET seq = $seq,
       state = CASE WHEN $seq <= COALESCE((SELECT through_seq FROM receipts r WHERE r.chat_id = outbox.chat_id), 0)
                    THEN 'delivered' ELSE 'sent' END,
       problem_code = NULL, problem_message = NULL, problem_at_ms = NULL
     WHERE message_id = $id AND state = 'queued' RETURNING *`,
    { $seq: seq, $id: messageId },
  );
}

/** Records why a queued message is not sent yet; `isFinal`: it failed for good. */
export function markQueuedProblem(
  db: DatabaseSync,
  messageId: string,
  problem: OutboxProblem,
  isFinal: boolean,
): OutboxEntry | undefined {
  const state = isFinal ? "state = 'failed', " : "";
  return oneEntry(
    db,
    `UPDATE outbox SET ${state}problem_code = ?, problem_message = ?, problem_at_ms = ?
     WHERE message_id = ? AND state = 'queued' RETURNING *`,
    problem.code,
    problem.message,
    problem.atMs,
    messageId,
  );
}
