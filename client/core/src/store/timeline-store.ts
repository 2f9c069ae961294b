/**
 * The TimelineStore port: the messages this device received, each chat's
 * highest received seq, and how far the user has read.
 *
 * Invariants every adapter keeps:
 * - `saveReceived` is idempotent per (chat, seq), moves the chat's highest
 *   received seq forward only, and is durable when it resolves; its E2E
 *   writes commit with it (the one transaction notion: see
 *   e2e-state-store.ts).
 * - The read mark of a chat moves forward only.
 * - Some received records are never shown (isShownToUser): they neither
 *   count as unread nor stand as a chat's last message, but they are stored
 *   and listed like any other, so paging by seq sees no gaps.
 */
import type { OutboxEntry } from "./outbox-store.ts";
import type { E2eWrite } from "./e2e-state-store.ts";
import type { Content } from "@remessenger/protocol";

export interface ReceivedMessage {
  chatId: string;
  seq: number;
  /** 32 hex digits. */
  messageId: string;
  senderUserId: string;
  senderDeviceId: string;
  serverTimeMs: number;
  /** Undefined when the payload could not be read (kept so the gap is visible). */
  content: Content | undefined;
  /** Why the content could not be read ("undecryptable: no-session ..."), shown to the user. */
  problem?: string;
}

/** What a chat list shows of one chat. */
export interface ChatActivity {
  chatId: string;
  /** The newest received message a user sees (by seq), if any. */
  lastReceived: ReceivedMessage | undefined;
  /** This device's newest outbox entry of the chat (by position), if any. */
  lastOwn: OutboxEntry | undefined;
  /** Received messages a user sees, from other users, above the read mark. */
  unreadCount: number;
  /** The read mark (0: nothing read). */
  readThroughSeq: number;
}

/**
 * Whether a received record is a message a user sees: one with a `problem`
 * (undecryptable, shown with its reason) or text. Control records are not: a
 * group's pairwise key distribution stored without content, and the control
 * bodies content.proto marks "never shown" (sender keys, their requests,
 * session resets).
 */
export function isShownToUser(message: Pick<ReceivedMessage, "content" | "problem">): boolean {
  if (message.problem !== undefined) return true;
  const body = message.content?.body;
  if (body === undefined) return false;
  switch (body.$case) {
    case "text":
      return true;
    case "senderKey":
    case "senderKeyRequest":
    case "sessionReset":
      return false;
  }
}

export interface TimelineStore {
  /**
   * Stores a received message with `writes`, atomically; false (and nothing
   * applied) when (chat, seq) was stored already. StaleE2eStateError when a write is stale.
   */
  saveReceived(message: ReceivedMessage, writes?: readonly E2eWrite[]): Promise<boolean>;
  /** Whether (chat, seq) is stored. */
  hasReceived(chatId: string, seq: number): Promise<boolean>;
  /** Per chat, the highest seq stored. */
  highestReceivedSeqs(): Promise<Map<string, number>>;
  /** Received messages of a chat after `afterSeq`: the `limit` lowest seqs above it, in seq order. */
  listReceived(chatId: string, afterSeq: number, limit: number): Promise<ReceivedMessage[]>;
  /**
   * Received messages of a chat before `beforeSeq`: the `limit` highest seqs
   * below it, returned in ascending seq order (a page to put above the ones shown).
   */
  listReceivedBefore(chatId: string, beforeSeq: number, limit: number): Promise<ReceivedMessage[]>;
  /** Moves the chat's read mark to `throughSeq`; true when it moved (it only moves forward). */
  markRead(chatId: string, throughSeq: number): Promise<boolean>;
  /**
   * Every chat with a saved summary (DirectoryStore) or any message, received
   * or in the outbox, in chatId order: one call for a whole chat list. Unread
   * messages are those a user sees, from a sender other than the stored
   * profile's user, above the read mark.
   */
  chatActivity(): Promise<ChatActivity[]>;
}
