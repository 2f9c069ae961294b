/**
 * ClientStore on node:sqlite: the CLI's profile database (client.sqlite in
 * the profile directory). It keeps every invariant of the ports (see
 * client/core/src/store/client-store.ts) and passes their contract suites.
 * The tables, their migrations and rows are in sqlite-client-schema.ts; the
 * outbox's single statements in sqlite-outbox.ts, the timeline's in
 * sqlite-timeline.ts, the E2E state's in
 * sqlite-e2e-state.ts, the chat list's in sqlite-chat-activity.ts.
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
import { DatabaseSync } from "node:sqlite";
import {
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
} from "../index.ts";
import { Content } from "@remessenger/protocol";
import {
  type ChatRow,
  type OutboxRow,
  SCHEMA_VERSION,
  migrateClientSchema,
  toChat,
  toEntry,
} from "./sqlite-client-schema.ts";
import { readChatActivity } from "./sqlite-chat-activity.ts";
import { applyE2eWrites, listE2eKeys, readE2eRecords } from "./sqlite-e2e-state.ts";
import {
  chatsWithQueued,
  countOutbox,
  listOutbox,
  markQueuedProblem,
  markSent,
  nextQueued,
  oneEntry,
} from "./sqlite-outbox.ts";
import {
  hasReceived,
  highestReceivedSeqs,
  insertReceived,
  listReceived,
  listReceivedBefore,
  markRead,
  raiseCursor,
} from "./sqlite-timeline.ts";

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
    return this.run(() => oneEntry(this.db, "SELECT * FROM outbox WHERE message_id = ?", messageId));
  }

  nextQueued(chatId: string): Promise<OutboxEntry | undefined> {
    return this.run(() => nextQueued(this.db, chatId));
  }

  chatsWithQueued(limit: number): Promise<string[]> {
    return this.run(() => chatsWithQueued(this.db, limit));
  }

  listOutbox(query: OutboxQuery): Promise<OutboxEntry[]> {
    return this.run(() => listOutbox(this.db, query));
  }

  countOutbox(state: OutboxState): Promise<number> {
    return this.run(() => countOutbox(this.db, state));
  }

  markSent(messageId: string, seq: number): Promise<OutboxEntry | undefined> {
    return this.run(() => markSent(this.db, messageId, seq));
  }

  markProblem(messageId: string, problem: OutboxProblem): Promise<OutboxEntry | undefined> {
    return this.run(() => markQueuedProblem(this.db, messageId, problem, false));
  }

  markFailed(messageId: string, problem: OutboxProblem): Promise<OutboxEntry | undefined> {
    return this.run(() => markQueuedProblem(this.db, messageId, problem, true));
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
        if (!insertReceived(this.db, message)) return false;
        this.applyE2e(writes);
        raiseCursor(this.db, message.chatId, message.seq);
        return true;
      }),
    );
  }

  hasReceived(chatId: string, seq: number): Promise<boolean> {
    return this.run(() => hasReceived(this.db, chatId, seq));
  }

  readE2e(keys: readonly string[]): Promise<Map<string, E2eRecord>> {
    return this.run(() => readE2eRecords(this.db, keys));
  }

  listE2eKeys(prefix: string): Promise<string[]> {
    return this.run(() => listE2eKeys(this.db, prefix));
  }

  writeE2e(writes: readonly E2eWrite[]): Promise<void> {
    return this.run(() => {
      this.transaction(() => {
        this.applyE2e(writes);
      });
    });
  }

  highestReceivedSeqs(): Promise<Map<string, number>> {
    return this.run(() => highestReceivedSeqs(this.db));
  }

  listReceived(chatId: string, afterSeq: number, limit: number): Promise<ReceivedMessage[]> {
    return this.run(() => listReceived(this.db, chatId, afterSeq, limit));
  }

  listReceivedBefore(chatId: string, beforeSeq: number, limit: number): Promise<ReceivedMessage[]> {
    return this.run(() => listReceivedBefore(this.db, chatId, beforeSeq, limit));
  }

  markRead(chatId: string, throughSeq: number): Promise<boolean> {
    return this.run(() => markRead(this.db, chatId, throughSeq));
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

  /** Inside a transaction: see sqlite-e2e-state.ts. */
  private applyE2e(writes: readonly E2eWrite[]): void {
    applyE2eWrites(this.db, writes);
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
}
