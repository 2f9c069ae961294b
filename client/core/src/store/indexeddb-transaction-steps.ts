/**
 * The steps IndexedDbClientStore's calls take inside one transaction: each
 * reads and writes through the transaction it is given and never awaits
 * anything but its requests, so the transaction stays active and the call
 * stays atomic (a step that throws aborts the caller's whole transaction).
 */
import { request, walk } from "../runtime/indexeddb-request.ts";
import { type E2eWrite, StaleE2eStateError } from "./e2e-state-store.ts";
import {
  BY_CHAT,
  BY_MESSAGE_ID,
  BY_SHOWN,
  type ChatMarkRecord,
  E2E,
  type E2eStateRecord,
  OUTBOX,
  type OutboxRecord,
  READ_MARKS,
  RECEIVED,
  type ReceivedRecord,
  toEntry,
  toReceived,
} from "./indexeddb-client-schema.ts";
import type { OutboxEntry } from "./outbox-store.ts";
import type { ChatActivity, ReceivedMessage } from "./timeline-store.ts";

/** Every key [...prefix, n] of an index whose keys end in a number (a position or a seq). */
export const keysUnder = (...prefix: IDBValidKey[]): IDBKeyRange =>
  IDBKeyRange.bound([...prefix, -Infinity], [...prefix, Infinity]);

export async function outboxRecord(tx: IDBTransaction, messageId: string): Promise<OutboxRecord | undefined> {
  return (await request(tx.objectStore(OUTBOX).index(BY_MESSAGE_ID).get(messageId))) as OutboxRecord | undefined;
}

export async function putOutbox(tx: IDBTransaction, record: OutboxRecord): Promise<OutboxEntry> {
  await request(tx.objectStore(OUTBOX).put(record));
  return toEntry(record);
}

/** Moves a chat's mark to `throughSeq` when that is higher; true when it moved. */
export async function raiseMark(store: IDBObjectStore, chatId: string, throughSeq: number): Promise<boolean> {
  const mark = (await request(store.get(chatId))) as ChatMarkRecord | undefined;
  if (throughSeq <= (mark?.throughSeq ?? 0)) return false;
  await request(store.put({ chatId, throughSeq } satisfies ChatMarkRecord));
  return true;
}

/** Inside the caller's transaction: checks every version first, then writes; a stale one throws before any write. */
export async function applyE2e(tx: IDBTransaction, writes: readonly E2eWrite[]): Promise<void> {
  const store = tx.objectStore(E2E);
  for (const write of writes) {
    const record = (await request(store.get(write.key))) as E2eStateRecord | undefined;
    if ((record?.version ?? 0) !== write.expectedVersion) throw new StaleE2eStateError(write.key);
  }
  for (const write of writes) {
    if (write.value === undefined) await request(store.delete(write.key));
    else {
      const record: E2eStateRecord = { key: write.key, version: write.expectedVersion + 1, value: write.value.slice() };
      await request(store.put(record));
    }
  }
}

/** One chat's line in a chat list, read in the caller's transaction. */
export async function activityOf(tx: IDBTransaction, chatId: string, me: string | undefined): Promise<ChatActivity> {
  const mark = (await request(tx.objectStore(READ_MARKS).get(chatId))) as ChatMarkRecord | undefined;
  const readThroughSeq = mark?.throughSeq ?? 0;
  const shown = tx.objectStore(RECEIVED).index(BY_SHOWN);
  let lastReceived: ReceivedMessage | undefined;
  await walk(shown.openCursor(keysUnder(chatId, 1), "prev"), (cursor) => {
    lastReceived = toReceived(cursor.value as ReceivedRecord);
    return false;
  });
  let unreadCount = 0;
  const unread = IDBKeyRange.bound([chatId, 1, readThroughSeq], [chatId, 1, Infinity], true);
  await walk(shown.openCursor(unread), (cursor) => {
    if ((cursor.value as ReceivedRecord).senderUserId !== me) unreadCount += 1;
    return true;
  });
  let lastOwn: OutboxEntry | undefined;
  await walk(tx.objectStore(OUTBOX).index(BY_CHAT).openCursor(keysUnder(chatId), "prev"), (cursor) => {
    lastOwn = toEntry(cursor.value as OutboxRecord);
    return false;
  });
  return { chatId, lastReceived, lastOwn, unreadCount, readThroughSeq };
}
