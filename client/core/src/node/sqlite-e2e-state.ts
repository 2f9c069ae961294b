/**
 * The E2E state part of the SQLite client store: the e2e_state table of
 * versioned, already encrypted records (sqlite-client-schema.ts). Writes run
 * inside the caller's transaction, so a write set commits with the outbox row
 * or received message it belongs to.
 *
 * Invariants: a write set checks every expected version before it writes
 * anything; one stale version throws StaleE2eStateError and the caller's
 * transaction rolls all of it back. A write stores version + 1; a write of
 * no value deletes the record.
 */
import type { DatabaseSync } from "node:sqlite";
import { type E2eRecord, type E2eWrite, StaleE2eStateError } from "../index.ts";

export function readE2eRecords(db: DatabaseSync, keys: readonly string[]): Map<string, E2eRecord> {
  const statement = db.prepare("SELECT version, value FROM e2e_state WHERE key = ?");
  const out = new Map<string, E2eRecord>();
  for (const key of keys) {
    const row = statement.get(key) as { version: number; value: Uint8Array } | undefined;
    if (row !== undefined) out.set(key, { version: row.version, value: row.value });
  }
  return out;
}

export function listE2eKeys(db: DatabaseSync, prefix: string): string[] {
  const rows = db
    .prepare("SELECT key FROM e2e_state WHERE substr(key, 1, length(?)) = ? ORDER BY key")
    .all(prefix, prefix) as Array<{ key: string }>;
  return rows.map((r) => r.key);
}

/** Inside a transaction: checks every version first, then writes; StaleE2eStateError rolls all back. */
export function applyE2eWrites(db: DatabaseSync, writes: readonly E2eWrite[]): void {
  const select = db.prepare("SELECT version FROM e2e_state WHERE key = ?");
  for (const write of writes) {
    const row = select.get(write.key) as { version: number } | undefined;
    if ((row?.version ?? 0) !== write.expectedVersion) throw new StaleE2eStateError(write.key);
  }
  const upsert = db.prepare(
    "INSERT INTO e2e_state (key, version, value) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET version = excluded.version, value = excluded.value",
  );
  const remove = db.prepare("DELETE FROM e2e_state WHERE key = ?");
  for (const write of writes) {
    if (write.value === undefined) remove.run(write.key);
    else upsert.run(write.key, write.expectedVersion + 1, write.value);
  }
}
