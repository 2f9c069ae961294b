/**
 * What a chat list shows of every chat, read from the SQLite client store's
 * tables (sqlite-client-schema.ts): one statement per chat and question,
 * each on an index — the last shown message (received_shown), the newest
 * own entry (outbox_by_chat_position), the read mark, and the unread count,
 * which walks only the shown messages above the mark. All in one read
 * transaction: the list is one snapshot, whatever another process writes.
 */
import type { DatabaseSync } from "node:sqlite";
import type { ChatActivity, DeviceProfile } from "../index.ts";
import { type OutboxRow, type ReceivedRow, toEntry, toReceived } from "./sqlite-client-schema.ts";

export function readChatActivity(db: DatabaseSync): ChatActivity[] {
  db.exec("BEGIN");
  try {
    return readInSnapshot(db);
  } finally {
    db.exec("COMMIT");
  }
}

function readInSnapshot(db: DatabaseSync): ChatActivity[] {
  const profile = db.prepare("SELECT value FROM meta WHERE key = 'profile'").get() as { value: string } | undefined;
  const me = profile === undefined ? "" : (JSON.parse(profile.value) as DeviceProfile).userId;
  const chatIds = db
    .prepare(
      `SELECT chat_id FROM chats UNION SELECT chat_id FROM chat_cursors UNION SELECT chat_id FROM outbox
       ORDER BY chat_id`,
    )
    .all() as Array<{ chat_id: string }>;
  const lastShown = db.prepare("SELECT * FROM received WHERE chat_id = ? AND shown = 1 ORDER BY seq DESC LIMIT 1");
  const lastOwn = db.prepare("SELECT * FROM outbox WHERE chat_id = ? ORDER BY position DESC LIMIT 1");
  const readMark = db.prepare("SELECT through_seq FROM read_marks WHERE chat_id = ?");
  const unread = db.prepare(
    "SELECT COUNT(*) AS n FROM received WHERE chat_id = ? AND shown = 1 AND seq > ? AND sender_user_id <> ?",
  );
  return chatIds.map(({ chat_id: chatId }): ChatActivity => {
    const received = lastShown.get(chatId) as ReceivedRow | undefined;
    const own = lastOwn.get(chatId) as OutboxRow | undefined;
    const readThroughSeq = (readMark.get(chatId) as { through_seq: number } | undefined)?.through_seq ?? 0;
    const { n } = unread.get(chatId, readThroughSeq, me) as { n: number };
    return {
      chatId,
      lastReceived: received && toReceived(received),
      lastOwn: own && toEntry(own),
      unreadCount: n,
      readThroughSeq,
    };
  });
}
