/**
 * ClientStore on node:sqlite: the CLI's profile database (client.sqlite in
 * the profile directory). It keeps every invariant of the ports (see
 * client/core/src/store/client-store.ts) and passes their contract suites.
 * The tables, their migrations and rows are in sqlite-client-schema.ts.
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
 * - Read marks move forward only, guarded in the upsert itself.
 */
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import {
  StaleE2eStateError,
  type ChatActivity,
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
  isShownToUser,
} from "../index.ts";
import { Content } from "@remessenger/protocol";
import {
  type ChatRow,
  type OutboxRow,
  type ReceivedRow,
  SCHEMA_VERSION,
  migrateClientSchema,
  toChat,
  toEntry,
  toReceived,
} from "./sqlite-client-schema.ts";
import { readChatActivity } from "./sqlite-chat-activity.ts";

/** How long a write waits for another process's transaction before failing. */
export const BUSY_TIMEOUT_MS = 10_000;

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
      const version = store.transaction(() => migrateClientSchema(db));
      if (version !== String(SCHEMA_VERSION)) {
        throw new Error(`profile database ${path} has schema ${version ?? "?"}; this client knows ${SCHEMA_VERSION}`);
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
      const inChat = query.chatId === undefined ? "" : "AND chat_id = ?";
      const rows = this.db
        .prepare(`SELECT * FROM outbox WHERE state IN (${marks}) ${inChat} ORDER BY position LIMIT ?`)
        .all(...states, ...(query.chatId === undefined ? [] : [query.chatId]), query.limit) as unknown as OutboxRow[];
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

  listReceivedBefore(chatId: string, beforeSeq: number, limit: number): Promise<ReceivedMessage[]> {
    return this.run(() => {
      const rows = this.db
        .prepare(
          `SELECT * FROM (SELECT * FROM received WHERE chat_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`,
        )
        .all(chatId, beforeSeq, limit) as unknown as ReceivedRow[];
      return rows.map(toReceived);
    });
  }

  markRead(chatId: string, throughSeq: number): Promise<boolean> {
    return this.run(() => {
      if (throughSeq <= 0) return false;
      const { changes } = this.db
        .prepare(
          `INSERT INTO read_marks (chat_id, through_seq) VALUES (?, ?)
           ON CONFLICT (chat_id) DO UPDATE SET through_seq = excluded.through_seq
           WHERE excluded.through_seq > read_marks.through_seq`,
        )
        .run(chatId, throughSeq);
      return changes > 0;
    });
  }

  chatActivity(): Promise<ChatActivity[]> {
    return this.run(() => readChatActivity(this.db));
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
