/**
 * ClientStore on IndexedDB: the store of the browser and app WebViews (no
 * Node API). It keeps every invariant of the ports (client-store.ts) and
 * passes their contract suites in a real Chromium
 * (indexeddb-client-store.browser.test.ts). The object stores, their
 * upgrades and records are in indexeddb-client-schema.ts, the steps a call
 * takes inside its transaction in indexeddb-transaction-steps.ts.
 *
 * - Durable when a write resolves: every readwrite transaction is "strict"
 *   and a write resolves only on the transaction's `complete`.
 * - One transaction per port call: an E2E write set is checked (versions)
 *   and applied in the same transaction as the message it goes with, so a
 *   stale set aborts the whole transaction and nothing of it is stored.
 * - Several tabs may open one database: IndexedDB runs transactions over the
 *   same stores one after another, state transitions are checked inside
 *   them, and positions come from the outbox's key generator. A connection
 *   closes itself when another tab upgrades the schema (the calls after that
 *   reject; the page reloads with the new code).
 * - Every read is bounded by its `limit`, by one chat, or by the number of
 *   chats (chatActivity, chatsWithQueued jump from chat to chat in an index).
 */
import { equalBytes } from "@remessenger/protocol";
import { drop } from "../runtime/drop.ts";
import { committed, request, walk } from "../runtime/indexeddb-request.ts";
import type { ClientStore } from "./client-store.ts";
import { activityOf, applyE2e, keysUnder, outboxRecord, putOutbox, raiseMark } from "./indexeddb-transaction-steps.ts";
import type { ChatSummary, ContactRecord } from "./directory-store.ts";
import type { E2eRecord, E2eWrite } from "./e2e-state-store.ts";
import {
  abortQuietly,
  BY_CHAT,
  BY_STATE,
  BY_STATE_CHAT,
  type ChatMarkRecord,
  CHATS,
  CONTACTS,
  CURSORS,
  DB_VERSION,
  E2E,
  type E2eStateRecord,
  META,
  OUTBOX,
  type OutboxRecord,
  READ_MARKS,
  RECEIPTS,
  RECEIVED,
  type ReceivedRecord,
  toEntry,
  toOutboxRecord,
  toReceived,
  toReceivedRecord,
  upgradeClientDb,
} from "./indexeddb-client-schema.ts";
import type { NewOutboxMessage, OutboxEntry, OutboxProblem, OutboxQuery, OutboxState } from "./outbox-store.ts";
import type { DeviceProfile } from "./profile-store.ts";
import type { ChatActivity, ReceivedMessage } from "./timeline-store.ts";

/** The database a client uses when it names none. */
export const DEFAULT_CLIENT_DB = "remessenger-client";
const PROFILE_KEY = "profile";

export class IndexedDbClientStore implements ClientStore {
  private readonly db: IDBDatabase;

  private constructor(db: IDBDatabase) {
    this.db = db;
  }

  /** Opens (creating or upgrading if needed) the database `name`. */
  static async open(name: string = DEFAULT_CLIENT_DB): Promise<IndexedDbClientStore> {
    const opening = indexedDB.open(name, DB_VERSION);
    opening.onupgradeneeded = (event) => {
      const tx = opening.transaction;
      if (tx === null) throw new Error("IndexedDB upgrade without its transaction");
      upgradeClientDb(opening.result, tx, event.oldVersion);
    };
    const db = await request(opening);
    db.onversionchange = () => {
      db.close();
    };
    return new IndexedDbClientStore(db);
  }

  getProfile(): Promise<DeviceProfile | undefined> {
    return this.read([META], async (tx) => (await request(tx.objectStore(META).get(PROFILE_KEY))) as DeviceProfile);
  }

  saveProfile(profile: DeviceProfile): Promise<void> {
    return this.write([META], async (tx) => {
      await request(tx.objectStore(META).put({ ...profile }, PROFILE_KEY));
    });
  }

  addToOutbox(message: NewOutboxMessage, writes: readonly E2eWrite[] = []): Promise<OutboxEntry> {
    return this.write([OUTBOX, E2E], async (tx) => {
      await applyE2e(tx, writes);
      const entry = {
        ...message,
        state: "queued" as const,
        seq: undefined,
        problem: undefined,
        sealed: message.sealed,
      };
      const position = (await request(tx.objectStore(OUTBOX).add(toOutboxRecord(entry)))) as number;
      return { ...entry, position, sealed: entry.sealed?.slice() };
    });
  }

  sealOutboxEntry(
    messageId: string,
    sealed: Uint8Array,
    writes: readonly E2eWrite[],
  ): Promise<OutboxEntry | undefined> {
    return this.write([OUTBOX, E2E], async (tx) => {
      const record = await outboxRecord(tx, messageId);
      if (record?.state !== "queued" || record.sealed !== null) return undefined;
      await applyE2e(tx, writes);
      return putOutbox(tx, { ...record, sealed: sealed.slice() });
    });
  }

  resealOutboxEntry(
    messageId: string,
    previous: Uint8Array,
    sealed: Uint8Array,
    writes: readonly E2eWrite[],
  ): Promise<OutboxEntry | undefined> {
    return this.write([OUTBOX, E2E], async (tx) => {
      const record = await outboxRecord(tx, messageId);
      if (record?.state !== "queued" || record.sealed === null || !equalBytes(record.sealed, previous)) {
        return undefined;
      }
      await applyE2e(tx, writes);
      return putOutbox(tx, { ...record, sealed: sealed.slice() });
    });
  }

  getOutboxEntry(messageId: string): Promise<OutboxEntry | undefined> {
    return this.read([OUTBOX], async (tx) => {
      const record = await outboxRecord(tx, messageId);
      return record && toEntry(record);
    });
  }

  nextQueued(chatId: string): Promise<OutboxEntry | undefined> {
    return this.read([OUTBOX], async (tx) => {
      const index = tx.objectStore(OUTBOX).index(BY_STATE_CHAT);
      const [record] = (await request(index.getAll(keysUnder("queued", chatId), 1))) as OutboxRecord[];
      return record && toEntry(record);
    });
  }

  chatsWithQueued(limit: number): Promise<string[]> {
    return this.read([OUTBOX], async (tx) => {
      const heads: Array<{ chatId: string; position: number }> = [];
      const range = IDBKeyRange.bound(["queued"], ["queued", []]);
      // The first key of each chat is its oldest queued message; then jump to the next chat.
      await walk(tx.objectStore(OUTBOX).index(BY_STATE_CHAT).openKeyCursor(range), (cursor) => {
        const [, chatId, position] = cursor.key as [string, string, number];
        heads.push({ chatId, position });
        return ["queued", chatId, Infinity];
      });
      heads.sort((a, b) => a.position - b.position);
      return heads.slice(0, Math.max(0, limit)).map((h) => h.chatId);
    });
  }

  listOutbox(query: OutboxQuery): Promise<OutboxEntry[]> {
    return this.read([OUTBOX], async (tx) => {
      const out: OutboxEntry[] = [];
      if (query.limit <= 0) return out;
      const store = tx.objectStore(OUTBOX);
      // One state asked for: its index holds only matches, in position order; else filter as we go.
      const [only, ...more] = query.states ?? [];
      const isOneState = only !== undefined && more.length === 0;
      let cursor: IDBRequest<IDBCursorWithValue | null>;
      if (isOneState && query.chatId !== undefined) {
        cursor = store.index(BY_STATE_CHAT).openCursor(keysUnder(only, query.chatId));
      } else if (isOneState) {
        cursor = store.index(BY_STATE).openCursor(only);
      } else if (query.chatId !== undefined) {
        cursor = store.index(BY_CHAT).openCursor(keysUnder(query.chatId));
      } else {
        cursor = store.openCursor();
      }
      await walk(cursor, (c) => {
        const record = c.value as OutboxRecord;
        if (query.states === undefined || query.states.includes(record.state)) out.push(toEntry(record));
        return out.length < query.limit;
      });
      return out;
    });
  }

  countOutbox(state: OutboxState): Promise<number> {
    return this.read([OUTBOX], (tx) => request(tx.objectStore(OUTBOX).index(BY_STATE).count(state)));
  }

  markSent(messageId: string, seq: number): Promise<OutboxEntry | undefined> {
    return this.write([OUTBOX, RECEIPTS], async (tx) => {
      const record = await outboxRecord(tx, messageId);
      if (record?.state !== "queued") return undefined;
      const receipt = (await request(tx.objectStore(RECEIPTS).get(record.chatId))) as ChatMarkRecord | undefined;
      const state = seq <= (receipt?.throughSeq ?? 0) ? "delivered" : "sent";
      return putOutbox(tx, { ...record, seq, state, problem: null });
    });
  }

  markProblem(messageId: string, problem: OutboxProblem): Promise<OutboxEntry | undefined> {
    return this.updateQueued(messageId, { problem: { ...problem } });
  }

  markFailed(messageId: string, problem: OutboxProblem): Promise<OutboxEntry | undefined> {
    return this.updateQueued(messageId, { state: "failed", problem: { ...problem } });
  }

  applyReceipt(chatId: string, throughSeq: number): Promise<OutboxEntry[]> {
    return this.write([OUTBOX, RECEIPTS], async (tx) => {
      await raiseMark(tx.objectStore(RECEIPTS), chatId, throughSeq);
      const delivered: OutboxEntry[] = [];
      // Sent messages of the chat, in position order; one send is in flight per chat, so these are few.
      await walk(tx.objectStore(OUTBOX).index(BY_STATE_CHAT).openCursor(keysUnder("sent", chatId)), (cursor) => {
        const record = cursor.value as OutboxRecord;
        if (record.seq !== null && record.seq <= throughSeq) {
          const next = { ...record, state: "delivered" as const };
          cursor.update(next);
          delivered.push(toEntry(next));
        }
        return true;
      });
      return delivered;
    });
  }

  saveReceived(message: ReceivedMessage, writes: readonly E2eWrite[] = []): Promise<boolean> {
    return this.write([RECEIVED, CURSORS, E2E], async (tx) => {
      const received = tx.objectStore(RECEIVED);
      if ((await request(received.count([message.chatId, message.seq]))) > 0) return false;
      await applyE2e(tx, writes);
      await request(received.add(toReceivedRecord(message)));
      await raiseMark(tx.objectStore(CURSORS), message.chatId, message.seq);
      return true;
    });
  }

  hasReceived(chatId: string, seq: number): Promise<boolean> {
    return this.read([RECEIVED], async (tx) => (await request(tx.objectStore(RECEIVED).count([chatId, seq]))) > 0);
  }

  readE2e(keys: readonly string[]): Promise<Map<string, E2eRecord>> {
    return this.read([E2E], async (tx) => {
      const out = new Map<string, E2eRecord>();
      for (const key of keys) {
        const record = (await request(tx.objectStore(E2E).get(key))) as E2eStateRecord | undefined;
        if (record !== undefined) out.set(key, { version: record.version, value: record.value });
      }
      return out;
    });
  }

  listE2eKeys(prefix: string): Promise<string[]> {
    // E2E keys are ASCII: every key starting with `prefix` sorts below prefix + U+FFFF.
    return this.read([E2E], async (tx) => {
      const range = IDBKeyRange.bound(prefix, `${prefix}\uffff`);
      return (await request(tx.objectStore(E2E).getAllKeys(range))) as string[];
    });
  }

  writeE2e(writes: readonly E2eWrite[]): Promise<void> {
    return this.write([E2E], (tx) => applyE2e(tx, writes));
  }

  highestReceivedSeqs(): Promise<Map<string, number>> {
    return this.read([CURSORS], async (tx) => {
      const marks = (await request(tx.objectStore(CURSORS).getAll())) as ChatMarkRecord[];
      return new Map(marks.map((m) => [m.chatId, m.throughSeq]));
    });
  }

  listReceived(chatId: string, afterSeq: number, limit: number): Promise<ReceivedMessage[]> {
    return this.read([RECEIVED], async (tx) => {
      if (limit <= 0) return [];
      const range = IDBKeyRange.bound([chatId, afterSeq], [chatId, Infinity], true);
      return ((await request(tx.objectStore(RECEIVED).getAll(range, limit))) as ReceivedRecord[]).map(toReceived);
    });
  }

  listReceivedBefore(chatId: string, beforeSeq: number, limit: number): Promise<ReceivedMessage[]> {
    return this.read([RECEIVED], async (tx) => {
      const newestFirst: ReceivedMessage[] = [];
      if (limit <= 0) return newestFirst;
      const range = IDBKeyRange.bound([chatId, -Infinity], [chatId, beforeSeq], false, true);
      await walk(tx.objectStore(RECEIVED).openCursor(range, "prev"), (cursor) => {
        newestFirst.push(toReceived(cursor.value as ReceivedRecord));
        return newestFirst.length < limit;
      });
      return newestFirst.reverse();
    });
  }

  markRead(chatId: string, throughSeq: number): Promise<boolean> {
    return this.write([READ_MARKS], (tx) => raiseMark(tx.objectStore(READ_MARKS), chatId, throughSeq));
  }

  chatActivity(): Promise<ChatActivity[]> {
    return this.read([META, CHATS, CURSORS, OUTBOX, RECEIVED, READ_MARKS], async (tx) => {
      const me = ((await request(tx.objectStore(META).get(PROFILE_KEY))) as DeviceProfile | undefined)?.userId;
      const chatIds = new Set<string>();
      for (const name of [CHATS, CURSORS]) {
        // Both stores are keyed by chatId.
        for (const key of (await request(tx.objectStore(name).getAllKeys())) as string[]) chatIds.add(key);
      }
      await walk(tx.objectStore(OUTBOX).index(BY_CHAT).openKeyCursor(), (cursor) => {
        const [chatId] = cursor.key as [string, number];
        chatIds.add(chatId);
        return [chatId, Infinity];
      });
      const out: ChatActivity[] = [];
      for (const chatId of [...chatIds].sort()) out.push(await activityOf(tx, chatId, me));
      return out;
    });
  }

  saveChats(chats: readonly ChatSummary[]): Promise<void> {
    return this.write([CHATS], async (tx) => {
      for (const chat of chats)
        await request(tx.objectStore(CHATS).put({ ...chat, memberUserIds: [...chat.memberUserIds] }));
    });
  }

  getChat(chatId: string): Promise<ChatSummary | undefined> {
    return this.read(
      [CHATS],
      async (tx) => (await request(tx.objectStore(CHATS).get(chatId))) as ChatSummary | undefined,
    );
  }

  hasChat(chatId: string): Promise<boolean> {
    return this.read([CHATS, CURSORS], async (tx) => {
      const counts = await Promise.all([CHATS, CURSORS].map((name) => request(tx.objectStore(name).count(chatId))));
      return counts.some((n) => n > 0);
    });
  }

  listChats(): Promise<ChatSummary[]> {
    return this.read([CHATS], async (tx) => (await request(tx.objectStore(CHATS).getAll())) as ChatSummary[]);
  }

  saveContacts(contacts: readonly ContactRecord[]): Promise<void> {
    return this.write([CONTACTS], async (tx) => {
      for (const contact of contacts) await request(tx.objectStore(CONTACTS).put({ ...contact }));
    });
  }

  listContacts(): Promise<ContactRecord[]> {
    return this.read([CONTACTS], async (tx) => (await request(tx.objectStore(CONTACTS).getAll())) as ContactRecord[]);
  }

  close(): Promise<void> {
    this.db.close();
    return Promise.resolve();
  }

  /** queued → `change`, in one transaction; undefined when the message is not queued. */
  private updateQueued(
    messageId: string,
    change: Pick<Partial<OutboxRecord>, "state" | "problem">,
  ): Promise<OutboxEntry | undefined> {
    return this.write([OUTBOX], async (tx) => {
      const record = await outboxRecord(tx, messageId);
      if (record?.state !== "queued") return undefined;
      return putOutbox(tx, { ...record, ...change });
    });
  }

  private read<T>(stores: string[], work: (tx: IDBTransaction) => Promise<T>): Promise<T> {
    return work(this.db.transaction(stores, "readonly"));
  }

  /**
   * Runs `work` in one strict readwrite transaction and resolves once it has
   * committed. When `work` throws (StaleE2eStateError, a failed request), the
   * transaction is aborted and nothing of it is stored.
   */
  private async write<T>(stores: string[], work: (tx: IDBTransaction) => Promise<T>): Promise<T> {
    const tx = this.db.transaction(stores, "readwrite", { durability: "strict" });
    const done = committed(tx);
    let result: T;
    try {
      result = await work(tx);
    } catch (error) {
      // The abort's own rejection says less than `error`, which is what the caller gets.
      drop(done, () => undefined);
      abortQuietly(tx);
      throw error;
    }
    await done;
    return result;
  }
}
