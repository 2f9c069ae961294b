/**
 * Messages as a UI shows them: decoded text and one delivery state, built
 * from what the store keeps (received records, outbox entries). Pure.
 *
 * Invariants: control records never become views (a group's key
 * distribution, a session reset, a key request, a membership operation
 * stored as its place in the sequence); a record that could not be read is a
 * view in state "undecryptable" with its reason, never dropped; an own
 * message takes its outbox state when this device wrote it.
 */
import { contentText } from "../session/payload-codec.ts";
import type { OutboxEntry, ReceivedMessage } from "../store/client-store.ts";

export type MessageState = "queued" | "sent" | "delivered" | "read" | "failed" | "undecryptable";

/** One message of a chat, decoded. */
export interface MessageView {
  /** 32 hex digits. */
  messageId: string;
  chatId: string;
  /** The chat's sequence number; undefined until the server took the message. */
  seq?: number;
  senderUserId: string;
  /** The sender's display name when a contact record has one. */
  senderName?: string;
  /** The text; empty for an undecryptable message. */
  text: string;
  /** When it was written (own messages) or when the server took it. */
  sentAtMs: number;
  /** Written by this user (on this device or another of theirs). */
  isOwn: boolean;
  state: MessageState;
  /** Why it failed, is still queued, or could not be read. */
  reason?: string;
}

/** Whether a received record is a message a user sees (not a control record). */
export function isShown(record: ReceivedMessage): boolean {
  if (record.problem !== undefined) return record.content === undefined || contentText(record.content) !== undefined;
  return contentText(record.content) !== undefined;
}

/** Names of users, by user id. */
export type DisplayNames = ReadonlyMap<string, string>;

function withName(view: MessageView, names: DisplayNames): MessageView {
  const name = names.get(view.senderUserId);
  return name === undefined || name === "" ? view : { ...view, senderName: name };
}

function problemText(entry: OutboxEntry): string | undefined {
  return entry.problem === undefined ? undefined : `${entry.problem.code}: ${entry.problem.message}`;
}

/** A message this device wrote, from its outbox row. */
export function viewOfOutbox(entry: OutboxEntry, me: string, names: DisplayNames): MessageView {
  const reason = problemText(entry);
  return withName(
    {
      messageId: entry.messageId,
      chatId: entry.chatId,
      ...(entry.seq === undefined ? {} : { seq: entry.seq }),
      senderUserId: me,
      text: contentText(entry.content) ?? "",
      sentAtMs: entry.createdAtMs,
      isOwn: true,
      state: entry.state,
      ...(reason === undefined ? {} : { reason }),
    },
    names,
  );
}

/**
 * A received record; `own` is its outbox row when this device wrote it.
 * Another user's message is "delivered" (here); "read" is for own messages
 * the recipients read, which the protocol does not report yet.
 */
export function viewOfReceived(
  record: ReceivedMessage,
  context: { me: string; names: DisplayNames; own?: OutboxEntry | undefined },
): MessageView {
  const { me, names, own } = context;
  if (own !== undefined) return { ...viewOfOutbox(own, me, names), seq: record.seq };
  const isOwn = record.senderUserId === me;
  const text = contentText(record.content);
  const base: MessageView = {
    messageId: record.messageId,
    chatId: record.chatId,
    seq: record.seq,
    senderUserId: record.senderUserId,
    text: text ?? "",
    sentAtMs: record.serverTimeMs,
    isOwn,
    state: isOwn ? "sent" : "delivered",
  };
  const view: MessageView =
    record.problem === undefined ? base : { ...base, state: "undecryptable", reason: record.problem };
  return withName(view, names);
}

/** Orders views as a timeline shows them: by seq, messages the server has not taken yet last, by time. */
export function compareViews(a: MessageView, b: MessageView): number {
  if (a.seq !== undefined && b.seq !== undefined) return a.seq - b.seq;
  if (a.seq !== undefined) return -1;
  if (b.seq !== undefined) return 1;
  return a.sentAtMs - b.sentAtMs;
}
