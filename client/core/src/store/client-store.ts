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
 * - End-to-end state (sessions, prekeys, known devices) is a set of versioned
 *   records the E2E layer encrypts before it hands them over. A write names
 *   the version it read; if any record of a write set moved since, nothing of
 *   the set is applied and StaleE2eStateError says so. The writes that go with
 *   a message (the ratchet step of sealing it, of opening it) commit in the
 *   same transaction as the outbox insert or the received message, so a crash
 *   never leaves a message sealed twice or a key used without its message.
 * - A message's sealed payload is stored once; every retry sends the same
 *   bytes. It is replaced only by `resealOutboxEntry` (the server said the
 *   recipient devices changed), which adds payloads for new devices and drops
 *   those of gone ones; the caller keeps every other payload byte for byte.
 */
import { type Chat, ChatKind, type Content } from "@remessenger/protocol";

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
  /**
   * The encrypted SendMessageRequest, made once (when the message entered the
   * outbox, or at its first send when sessions had to be fetched first).
   */
  sealed: Uint8Array | undefined;
}

export interface NewOutboxMessage {
  messageId: string;
  chatId: string;
  content: Content;
  createdAtMs: number;
  /** The sealed SendMessageRequest when it could be made at once. */
  sealed?: Uint8Array;
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
  /** Why the content could not be read ("undecryptable: no-session ..."), shown to the user. */
  problem?: string;
}

/** One record of the end-to-end layer's state, as stored (encrypted by that layer). */
export interface E2eRecord {
  version: number;
  value: Uint8Array;
}

/**
 * Sets a record (value) or deletes it (undefined), only if it is still at
 * `expectedVersion` (0: it must not exist). The stored version becomes
 * expectedVersion + 1.
 */
export interface E2eWrite {
  key: string;
  expectedVersion: number;
  value: Uint8Array | undefined;
}

/** A write set named a version that another writer (process) has moved on from; nothing was applied. */
export class StaleE2eStateError extends Error {
  override readonly name = "StaleE2eStateError";
  constructor(key: string) {
    super(`end-to-end state ${key} changed while it was being used`);
  }
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
  /** DoH resolvers the tunnel goes through (absent: the server's own /dns-query). */
  dohUrls?: string[];
  /** The plain-DNS resolver of the tunnel (absent: the system's). */
  resolver?: { host: string; port: number };
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

  /**
   * Stores a new queued message, and applies `writes` in the same transaction;
   * resolves once both are durable. Rejects with StaleE2eStateError (nothing stored).
   */
  addToOutbox(message: NewOutboxMessage, writes?: readonly E2eWrite[]): Promise<OutboxEntry>;
  /**
   * Stores the sealed payload of a queued message that has none, with `writes`,
   * atomically. Undefined (nothing applied) when the message is not queued or is
   * sealed already; StaleE2eStateError when a write is stale.
   */
  sealOutboxEntry(messageId: string, sealed: Uint8Array, writes: readonly E2eWrite[]): Promise<OutboxEntry | undefined>;
  /**
   * Replaces the sealed payload of a queued message, with `writes`, atomically,
   * only while it is still `previous` (compared byte for byte). Undefined
   * (nothing applied) otherwise; StaleE2eStateError when a write is stale.
   */
  resealOutboxEntry(
    messageId: string,
    previous: Uint8Array,
    sealed: Uint8Array,
    writes: readonly E2eWrite[],
  ): Promise<OutboxEntry | undefined>;
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

  /**
   * Stores a received message with `writes`, atomically; false (and nothing
   * applied) when (chat, seq) was stored already. StaleE2eStateError when a write is stale.
   */
  saveReceived(message: ReceivedMessage, writes?: readonly E2eWrite[]): Promise<boolean>;
  /** Whether (chat, seq) is stored. */
  hasReceived(chatId: string, seq: number): Promise<boolean>;

  /** The records among `keys` that exist. */
  readE2e(keys: readonly string[]): Promise<Map<string, E2eRecord>>;
  /** Keys of the records whose key starts with `prefix`, sorted. */
  listE2eKeys(prefix: string): Promise<string[]>;
  /** Applies every write or none (StaleE2eStateError). */
  writeE2e(writes: readonly E2eWrite[]): Promise<void>;
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
