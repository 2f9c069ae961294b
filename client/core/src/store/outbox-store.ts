/**
 * The OutboxStore port: the messages this device wrote, from queued to sent,
 * delivered or failed, and the delivery receipts that move them.
 *
 * Invariants every adapter keeps:
 * - `addToOutbox` is durable when it resolves: a message is stored before it
 *   is ever sent. Positions grow in the order messages were added.
 * - States only move forward: queued → sent → delivered, or queued → failed.
 *   A transition from the wrong state changes nothing and returns undefined,
 *   so two processes racing on one profile are harmless.
 * - A receipt covering a seq delivers a sent message with that seq, also when
 *   the receipt was recorded before the message learned its seq.
 * - A message's sealed payload is stored once; every retry sends the same
 *   bytes. It is replaced only by `resealOutboxEntry` (the server said the
 *   recipient devices changed), which adds payloads for new devices and drops
 *   those of gone ones; the caller keeps every other payload byte for byte.
 * - The E2E writes of inserting, sealing and resealing commit with them (the
 *   one transaction notion: see e2e-state-store.ts).
 */
import type { Content } from "@remessenger/protocol";
import type { E2eWrite } from "./e2e-state-store.ts";

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

export interface OutboxQuery {
  /** Only these states (all when omitted). */
  states?: readonly OutboxState[];
  /** Only this chat's entries (every chat's when omitted). */
  chatId?: string;
  /** At most this many, oldest (lowest position) first. */
  limit: number;
}

export interface OutboxStore {
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
}
