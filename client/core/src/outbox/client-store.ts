/**
 * The ClientStore port: everything a client keeps on its device — its
 * profile, the outbox of messages it wrote, the messages it received with a
 * per-chat cursor, and a cache of chats and contacts. Adapters: the
 * in-memory one here (tests, load generators), SQLite in the Node CLI,
 * IndexedDB in the app. All pass client/test/client-store-contract.ts.
 *
 * Invariants every adapter keeps:
 * - `addToOutbox` is durable when it resolves: a message is stored before it
 *   is ever sent. Positions grow in the order messages were added.
 * - Outbox states only move forward: queued → sent → delivered, or
 *   queued → failed. A transition from the wrong state changes nothing and
 *   returns undefined, so two processes racing on one profile are harmless.
 * - `saveReceived` is idempotent per (chat, seq) and moves the chat's
 *   highest received seq forward only; it is durable when it resolves.
 * - A receipt covering a seq delivers a sent message with that seq, also when
 *   the receipt was recorded before the message learned its seq.
 */
import { type Chat, ChatKind, type Content } from "../wire/proto.ts";

export type OutboxState = "queued" | "sent" | "delivered" | "failed";

/** Why an outbox message is still queued, or why it failed. */
export interface OutboxProblem {
  /** The server's error code name ("NOT_FOUND"), or "NETWORK" when no answer came. */
  code: string;
  message: string;
  atMs: number;
}

export interface OutboxEntry {
  /** 32 hex digits; also the idempotency key on the server. */
  messageId: string;
  chatId: string;
  /** Order of writing on this device; sends follow it within each chat. */
  position: number;
  content: Content;
  createdAtMs: number;
  state: OutboxState;
  /** The chat seq the server gave (sent and delivered only). */
  seq: number | undefined;
  /** The last transient problem (queued) or the refusal (failed). */
  problem: OutboxProblem | undefined;
}

export interface NewOutboxMessage {
  messageId: string;
  chatId: string;
  content: Content;
  createdAtMs: number;
}

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
}

export type ChatKindName = "direct" | "group";

export interface ChatSummary {
  chatId: string;
  kind: ChatKindName;
  title: string;
  memberUserIds: string[];
}

/** The stored summary of a chat as the server describes it. */
export function toChatSummary(chat: Chat): ChatSummary {
  return {
    chatId: chat.chatId,
    kind: chat.kind === ChatKind.CHAT_KIND_GROUP ? "group" : "direct",
    title: chat.title,
    memberUserIds: [...chat.memberUserIds],
  };
}

export interface ContactRecord {
  userId: string;
  displayName: string;
}

/** Who this device is, and where its server is. */
export interface DeviceProfile {
  serverUrl: string;
  userId: string;
  deviceId: string;
  displayName: string;
  registeredAtMs: number;
  /** The server's DNS tunnel, learned at init (hello) or from an invite; absent when it has none. */
  tunnel?: { zone: string; /** base64url of the gateway's X25519 key */ publicKey: string };
}

export interface OutboxQuery {
  /** Only these states (all when omitted). */
  states?: readonly OutboxState[];
  /** At most this many, oldest first. */
  limit: number;
}

export interface ClientStore {
  getProfile(): Promise<DeviceProfile | undefined>;
  saveProfile(profile: DeviceProfile): Promise<void>;

  /** Stores a new queued message; resolves once it is durable. */
  addToOutbox(message: NewOutboxMessage): Promise<OutboxEntry>;
  getOutboxEntry(messageId: string): Promise<OutboxEntry | undefined>;
  /** The oldest queued message of the chat: the next one to send there. */
  nextQueued(chatId: string): Promise<OutboxEntry | undefined>;
  /** Chats with queued messages, the chat of the oldest first. */
  chatsWithQueued(limit: number): Promise<string[]>;
  listOutbox(query: OutboxQuery): Promise<OutboxEntry[]>;
  countOutbox(state: OutboxState): Promise<number>;
  /** queued → sent (or → delivered when a receipt covers `seq` already). */
  markSent(messageId: string, seq: number): Promise<OutboxEntry | undefined>;
  /** Records a transient problem on a queued message (it stays queued). */
  markProblem(messageId: string, problem: OutboxProblem): Promise<OutboxEntry | undefined>;
  /** queued → failed, for a refusal that retrying cannot fix. */
  markFailed(messageId: string, problem: OutboxProblem): Promise<OutboxEntry | undefined>;
  /** Another user's device has the chat through `throughSeq`: returns the messages this delivered. */
  applyReceipt(chatId: string, throughSeq: number): Promise<OutboxEntry[]>;

  /** Stores a received message; false when (chat, seq) was stored already. */
  saveReceived(message: ReceivedMessage): Promise<boolean>;
  /** Per chat, the highest seq stored. */
  highestReceivedSeqs(): Promise<Map<string, number>>;
  /** Received messages of a chat after `afterSeq`, in seq order. */
  listReceived(chatId: string, afterSeq: number, limit: number): Promise<ReceivedMessage[]>;

  saveChats(chats: readonly ChatSummary[]): Promise<void>;
  getChat(chatId: string): Promise<ChatSummary | undefined>;
  /** Chats known here: saved ones, and any chat a message arrived in. */
  hasChat(chatId: string): Promise<boolean>;
  listChats(): Promise<ChatSummary[]>;
  saveContacts(contacts: readonly ContactRecord[]): Promise<void>;
  listContacts(): Promise<ContactRecord[]>;

  close(): Promise<void>;
}
