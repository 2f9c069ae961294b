/**
 * ClientStore on node:sqlite: the CLI's profile database (client.sqlite in
 * the profile directory). It keeps every invariant of the port (see
 * client/core/src/store/client-store.ts) and passes its contract suite.
 *
 * - WAL and synchronous=FULL: a commit is on disk when the call returns, so
 *   `addToOutbox` resolving means the message survives a crash.
 * - Several processes may open one profile at once (`listen` and `send`):
 *   every multi-statement change runs in BEGIN IMMEDIATE, busy waits are
 *   bounded by busy_timeout, and state transitions are guarded in SQL
 *   (`WHERE state = 'queued'`), so racing processes cannot regress a message.
 * - End-to-end state (sessions, prekeys, known devices) sits in e2e_state as
 *   versioned blobs the E2E layer encrypted with the profile's storage key;
 *   a write set checks every version inside its transaction, together with
 *   the outbox insert or received message it belongs to.
 * - Contents are stored as encoded `Content` protobufs; the sealed payload
 *   (what the server gets) beside them.
 */
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import {
  StaleE2eStateError,
  type ChatKindName,
  type ChatSummary,
  type ClientStore,
  type ContactRecord,
  type DeviceProfile,
  type E2eRecord,
  type E2eWrite,
  type NewOutboxMessage,
  type OutboxEntry,
  type OutboxProblem,
  type OutboxQuery,
  type OutboxState,
  type ReceivedMessage,
} from "../index.ts";

import { Content } from "@remessenger/protocol";

/** How long a write waits for another process's transaction before failing. */
export const BUSY_TIMEOUT_MS = 10_000;
const SCHEMA_VERSION = 2;

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
  PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chat_cursors (chat_id TEXT PRIMARY KEY, highest_seq INTEGER NOT NULL) WITHOUT ROWID;
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

interface OutboxRow {
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

interface ReceivedRow {
  chat_id: string;
  seq: number;
  message_id: string;
  sender_user_id: string;
  sender_device_id: string;
  server_time_ms: number;
  content: Uint8Array | null;
  problem: string | null;
}

interface ChatRow {
  chat_id: string;
  kind: ChatKindName;
  title: string;
  members: string;
}

export class SqliteClientStore implements ClientStore {
  private readonly db: DatabaseSync;
  private isClosed = false;

  private constructor(db: DatabaseSync) {
    this.db = db;
  }

  /** Opens (creating if needed) the database at `path`. */
  static open(path: string): SqliteClientStore {
    const db = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS });
    try {
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      const store = new SqliteClientStore(db);
      store.transaction(() => {
        const isOld =
          db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() !== undefined &&
          (db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string } | undefined)
            ?.value === "1";
        if (isOld) {
          db.exec(MIGRATE_1_TO_2);
          db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(SCHEMA_VERSION));
        }
        db.exec(SCHEMA);
        db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)").run(String(SCHEMA_VERSION));
      });
      const version = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as
        { value: string } | undefined;
      if (version?.value !== String(SCHEMA_VERSION)) {
        throw new Error(
          `profile database ${path} has schema ${version?.value ?? "?"}; this client knows ${SCHEMA_VERSION}`,
        );
      }
      return store;
    } catch (error) {
      db.close();
      throw error;
    }
  }

  getProfile(): Promise<DeviceProfile | undefined> {
    return this.run(() => {
      const row = this.db.prepare("SELECT value FROM meta WHERE key = 'profile'").get() as
        { value: string } | undefined;
      return row === undefined ? undefined : (JSON.parse(row.value) as DeviceProfile);
    });
  }

  saveProfile(profile: DeviceProfile): Promise<void> {
    return this.run(() => {
      this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('profile', ?)").run(JSON.stringify(profile));
    });
  }

  addToOutbox(message: NewOutboxMessage, writes: readonly E2eWrite[] = []): Promise<OutboxEntry> {
    return this.run(() =>
      this.transaction(() => {
        this.applyE2e(writes);
        const row = this.db
          .prepare(
            `INSERT INTO outbox (message_id, chat_id, content, created_at_ms, state, sealed)
             VALUES (?, ?, ?, ?, 'queued', ?) RETURNING *`,
          )
          .get(
            message.messageId,
            message.chatId,
            Content.encode(message.content).finish(),
            message.createdAtMs,
            message.sealed ?? null,
          );
        return toEntry(row as unknown as OutboxRow);
      }),
    );
  }

  sealOutboxEntry(
    messageId: string,
    sealed: Uint8Array,
    writes: readonly E2eWrite[],
  ): Promise<OutboxEntry | undefined> {
    return this.run(() =>
      this.transaction(() => {
        const row = this.db
          .prepare(
            `UPDATE outbox SET sealed = ? WHERE message_id = ? AND state = 'queued' AND sealed IS NULL RETURNING *`,
          )
          .get(sealed, messageId) as OutboxRow | undefined;
        if (row === undefined) return undefined;
        this.applyE2e(writes);
        return toEntry(row);
      }),
    );
  }

  resealOutboxEntry(
    messageId: string,
    previous: Uint8Array,
    sealed: Uint8Array,
    writes: readonly E2eWrite[],
  ): Promise<OutboxEntry | undefined> {
    return this.run(() =>
      this.transaction(() => {
        const row = this.db
          .prepare(`UPDATE outbox SET sealed = ? WHERE message_id = ? AND state = 'queued' AND sealed = ? RETURNING *`)
          .get(sealed, messageId, previous) as OutboxRow | undefined;
        if (row === undefined) return undefined;
        this.applyE2e(writes);
        return toEntry(row);
      }),
    );
  }

  getOutboxEntry(messageId: string): Promise<OutboxEntry | undefined> {
    return this.run(() => this.oneEntry("SELECT * FROM outbox WHERE message_id = ?", messageId));
  }

  nextQueued(chatId: string): Promise<OutboxEntry | undefined> {
    return this.run(() =>
      this.oneEntry("SELECT * FROM outbox WHERE state = 'queued' AND chat_id = ? ORDER BY position LIMIT 1", chatId),
    );
  }

  chatsWithQueued(limit: number): Promise<string[]> {
    return this.run(() => {
      const rows = this.db
        .prepare("SELECT chat_id FROM outbox WHERE state = 'queued' GROUP BY chat_id ORDER BY MIN(position) LIMIT ?")
        .all(limit) as Array<{ chat_id: string }>;
      return rows.map((r) => r.chat_id);
    });
  }

  listOutbox(query: OutboxQuery): Promise<OutboxEntry[]> {
    return this.run(() => {
      const states = query.states ?? ["queued", "sent", "delivered", "failed"];
      const marks = states.map(() => "?").join(", ");
      const rows = this.db
        .prepare(`SELECT * FROM outbox WHERE state IN (${marks}) ORDER BY position LIMIT ?`)
        .all(...states, query.limit) as unknown as OutboxRow[];
      return rows.map(toEntry);
    });
  }

  countOutbox(state: OutboxState): Promise<number> {
    return this.run(() => {
      const row = this.db.prepare("SELECT COUNT(*) AS n FROM outbox WHERE state = ?").get(state) as { n: number };
      return row.n;
    });
  }

  markSent(messageId: string, seq: number): Promise<OutboxEntry | undefined> {
    // One statement, so the receipt check and the update are atomic.
    return this.run(() =>
      this.oneEntry(
        `UPDATE outbox SET seq = $seq,
           state = CASE WHEN $seq <= COALESCE((SELECT through_seq FROM receipts r WHERE r.chat_id = outbox.chat_id), 0)
                        THEN 'delivered' ELSE 'sent' END,
           problem_code = NULL, problem_message = NULL, problem_at_ms = NULL
         WHERE message_id = $id AND state = 'queued' RETURNING *`,
        { $seq: seq, $id: messageId },
      ),
    );
  }

  markProblem(messageId: string, problem: OutboxProblem): Promise<OutboxEntry | undefined> {
    return this.run(() =>
      this.oneEntry(
        `UPDATE outbox SET problem_code = ?, problem_message = ?, problem_at_ms = ?
         WHERE message_id = ? AND state = 'queued' RETURNING *`,
        problem.code,
        problem.message,
        problem.atMs,
        messageId,
      ),
    );
  }

  markFailed(messageId: string, problem: OutboxProblem): Promise<OutboxEntry | undefined> {
    return this.run(() =>
      this.oneEntry(
        `UPDATE outbox SET state = 'failed', problem_code = ?, problem_message = ?, problem_at_ms = ?
         WHERE message_id = ? AND state = 'queued' RETURNING *`,
        problem.code,
        problem.message,
        problem.atMs,
        messageId,
      ),
    );
  }

  applyReceipt(chatId: string, throughSeq: number): Promise<OutboxEntry[]> {
    return this.run(() =>
      this.transaction(() => {
        this.db
          .prepare(
            `INSERT INTO receipts (chat_id, through_seq) VALUES (?, ?)
             ON CONFLICT (chat_id) DO UPDATE SET through_seq = MAX(through_seq, excluded.through_seq)`,
          )
          .run(chatId, throughSeq);
        const rows = this.db
          .prepare(
            `UPDATE outbox SET state = 'delivered'
             WHERE chat_id = ? AND state = 'sent' AND seq <= ? RETURNING *`,
          )
          .all(chatId, throughSeq) as unknown as OutboxRow[];
        return rows.map(toEntry).sort((a, b) => a.position - b.position);
      }),
    );
  }

  saveReceived(message: ReceivedMessage, writes: readonly E2eWrite[] = []): Promise<boolean> {
    return this.run(() =>
      this.transaction(() => {
        const { changes } = this.db
          .prepare(
            `INSERT OR IGNORE INTO received
               (chat_id, seq, message_id, sender_user_id, sender_device_id, server_time_ms, content, problem)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
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
          );
        if (changes === 0) return false;
        this.applyE2e(writes);
        this.db
          .prepare(
            `INSERT INTO chat_cursors (chat_id, highest_seq) VALUES (?, ?)
             ON CONFLICT (chat_id) DO UPDATE SET highest_seq = MAX(highest_seq, excluded.highest_seq)`,
          )
          .run(message.chatId, message.seq);
        return true;
      }),
    );
  }

  hasReceived(chatId: string, seq: number): Promise<boolean> {
    return this.run(
      () => this.db.prepare("SELECT 1 FROM received WHERE chat_id = ? AND seq = ?").get(chatId, seq) !== undefined,
    );
  }

  readE2e(keys: readonly string[]): Promise<Map<string, E2eRecord>> {
    return this.run(() => {
      const statement = this.db.prepare("SELECT version, value FROM e2e_state WHERE key = ?");
      const out = new Map<string, E2eRecord>();
      for (const key of keys) {
        const row = statement.get(key) as { version: number; value: Uint8Array } | undefined;
        if (row !== undefined) out.set(key, { version: row.version, value: row.value });
      }
      return out;
    });
  }

  listE2eKeys(prefix: string): Promise<string[]> {
    return this.run(() => {
      const rows = this.db
        .prepare("SELECT key FROM e2e_state WHERE substr(key, 1, length(?)) = ? ORDER BY key")
        .all(prefix, prefix) as Array<{ key: string }>;
      return rows.map((r) => r.key);
    });
  }

  writeE2e(writes: readonly E2eWrite[]): Promise<void> {
    return this.run(() => {
      this.transaction(() => {
        this.applyE2e(writes);
      });
    });
  }

  highestReceivedSeqs(): Promise<Map<string, number>> {
    return this.run(() => {
      const rows = this.db.prepare("SELECT chat_id, highest_seq FROM chat_cursors").all() as Array<{
        chat_id: string;
        highest_seq: number;
      }>;
      return new Map(rows.map((r) => [r.chat_id, r.highest_seq]));
    });
  }

  listReceived(chatId: string, afterSeq: number, limit: number): Promise<ReceivedMessage[]> {
    return this.run(() => {
      const rows = this.db
        .prepare("SELECT * FROM received WHERE chat_id = ? AND seq > ? ORDER BY seq LIMIT ?")
        .all(chatId, afterSeq, limit) as unknown as ReceivedRow[];
      return rows.map(toReceived);
    });
  }

  saveChats(chats: readonly ChatSummary[]): Promise<void> {
    return this.run(() => {
      this.transaction(() => {
        const statement = this.db.prepare(
          "INSERT OR REPLACE INTO chats (chat_id, kind, title, members) VALUES (?, ?, ?, ?)",
        );
        for (const chat of chats) statement.run(chat.chatId, chat.kind, chat.title, JSON.stringify(chat.memberUserIds));
      });
    });
  }

  getChat(chatId: string): Promise<ChatSummary | undefined> {
    return this.run(() => {
      const row = this.db.prepare("SELECT * FROM chats WHERE chat_id = ?").get(chatId) as ChatRow | undefined;
      return row === undefined ? undefined : toChat(row);
    });
  }

  hasChat(chatId: string): Promise<boolean> {
    return this.run(() => {
      const row = this.db
        .prepare(
          `SELECT EXISTS (SELECT 1 FROM chats WHERE chat_id = $id)
               OR EXISTS (SELECT 1 FROM chat_cursors WHERE chat_id = $id) AS known`,
        )
        .get({ $id: chatId }) as { known: number };
      return row.known === 1;
    });
  }

  listChats(): Promise<ChatSummary[]> {
    return this.run(() =>
      (this.db.prepare("SELECT * FROM chats ORDER BY chat_id").all() as unknown as ChatRow[]).map(toChat),
    );
  }

  saveContacts(contacts: readonly ContactRecord[]): Promise<void> {
    return this.run(() => {
      this.transaction(() => {
        const statement = this.db.prepare("INSERT OR REPLACE INTO contacts (user_id, display_name) VALUES (?, ?)");
        for (const contact of contacts) statement.run(contact.userId, contact.displayName);
      });
    });
  }

  listContacts(): Promise<ContactRecord[]> {
    return this.run(() => {
      const rows = this.db.prepare("SELECT user_id, display_name FROM contacts ORDER BY user_id").all() as Array<{
        user_id: string;
        display_name: string;
      }>;
      return rows.map((r) => ({ userId: r.user_id, displayName: r.display_name }));
    });
  }

  close(): Promise<void> {
    if (!this.isClosed) {
      this.isClosed = true;
      this.db.close();
    }
    return Promise.resolve();
  }

  /** The port is async (IndexedDB is); node:sqlite is not: errors become rejections. */
  private run<T>(work: () => T): Promise<T> {
    try {
      return Promise.resolve(work());
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Inside a transaction: checks every version first, then writes; StaleE2eStateError rolls all back. */
  private applyE2e(writes: readonly E2eWrite[]): void {
    const select = this.db.prepare("SELECT version FROM e2e_state WHERE key = ?");
    for (const write of writes) {
      const row = select.get(write.key) as { version: number } | undefined;
      if ((row?.version ?? 0) !== write.expectedVersion) throw new StaleE2eStateError(write.key);
    }
    const upsert = this.db.prepare(
      "INSERT INTO e2e_state (key, version, value) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET version = excluded.version, value = excluded.value",
    );
    const remove = this.db.prepare("DELETE FROM e2e_state WHERE key = ?");
    for (const write of writes) {
      if (write.value === undefined) remove.run(write.key);
      else upsert.run(write.key, write.expectedVersion + 1, write.value);
    }
  }

  /** BEGIN IMMEDIATE takes the write lock up front, so two processes never deadlock upgrading a read. */
  private transaction<T>(work: () => T): T {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const result = work();
      this.db.exec("COMMIT");
      return result;
    } catch (error) {
      this.db.exec("ROLLBACK");
      throw error;
    }
  }

  private oneEntry(
    sql: string,
    ...params: Array<SQLInputValue | Record<string, SQLInputValue>>
  ): OutboxEntry | undefined {
    const row = this.db.prepare(sql).get(...(params as SQLInputValue[])) as OutboxRow | undefined;
    return row === undefined ? undefined : toEntry(row);
  }
}

function toEntry(row: OutboxRow): OutboxEntry {
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

function toReceived(row: ReceivedRow): ReceivedMessage {
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

function toChat(row: ChatRow): ChatSummary {
  return { chatId: row.chat_id, kind: row.kind, title: row.title, memberUserIds: JSON.parse(row.members) as string[] };
}
