/**
 * Sends the outbox: every queued message, in outbox order within each chat,
 * until the server answers with its seq.
 *
 * Invariants:
 * - One message in flight per chat: the next one goes only after the previous
 *   one got its answer, so a chat's messages land in the order they were
 *   written even across retries and reconnects. Chats proceed in parallel.
 * - A send that fails and may succeed later (no connection, timeout,
 *   UNAVAILABLE...) leaves the message queued with the problem recorded and
 *   stops that chat until the next flush; a refusal (shouldRetry false)
 *   marks it failed and the chat moves on.
 * - Retrying is always safe: the message id makes the server's append
 *   idempotent, so a send whose answer was lost is answered with the first seq.
 * - Bounded: at most `maxConcurrentChats` chats are worked on at once; the
 *   others wait in a set of chat ids.
 */
import { RemessengerError, errorCodeName, shouldRetry, type SendMessageResponse } from "@remessenger/protocol";
import { backoffDelay, type BackoffPolicy, DEFAULT_BACKOFF } from "../runtime/backoff.ts";
import type { Clock } from "../runtime/clock.ts";
import { drop } from "../runtime/drop.ts";
import type { Logger } from "../runtime/logger.ts";
import type { OutboxEntry, OutboxProblem, OutboxStore } from "../store/outbox-store.ts";

export const DEFAULT_MAX_CONCURRENT_CHATS = 64;
/** Chats read per flush; a flush after the next reconnect or poll takes the rest. */
export const MAX_CHATS_PER_FLUSH = 10_000;

/** What puts one queued message on the wire (the session's Sealer: it seals, then sends). */
export interface QueuedMessageSender {
  /** Sends one message on the live connection; rejects when there is none. */
  send(entry: OutboxEntry): Promise<SendMessageResponse>;
  /** Whether a connection is up that can take sends. */
  canSend(): boolean;
}

export interface OutboxSenderOptions {
  store: OutboxStore;
  sender: QueuedMessageSender;
  /** A message changed state (sent, delivered, failed, or a new problem). */
  onUpdate(entry: OutboxEntry): void;
  /** The store failed: the sender stops this chat until the next flush. */
  onError(error: unknown): void;
  clock: Clock;
  random: () => number;
  logger: Logger;
  maxConcurrentChats?: number;
  /** Backoff for retries while connected (the server said UNAVAILABLE, a send timed out). */
  retryBackoff?: BackoffPolicy;
}

type Outcome = "sent" | "failed" | "retry-later";

export class OutboxSender {
  private readonly options: OutboxSenderOptions;
  private readonly maxConcurrentChats: number;
  private readonly running = new Map<string, Promise<void>>();
  /** Chats that got new messages while their worker ran. */
  private readonly again = new Set<string>();
  /** Chats waiting for a worker slot. */
  private readonly waiting = new Set<string>();
  private retryAttempt = 0;
  private cancelRetry: (() => void) | undefined;
  private isStopped = false;

  constructor(options: OutboxSenderOptions) {
    this.options = options;
    this.maxConcurrentChats = options.maxConcurrentChats ?? DEFAULT_MAX_CONCURRENT_CHATS;
  }

  /** Sends whatever is queued in any chat (after a connect, on a poll, on a retry timer). */
  async flushAll(): Promise<void> {
    if (!this.options.sender.canSend() || this.isStopped) return;
    for (const chatId of await this.options.store.chatsWithQueued(MAX_CHATS_PER_FLUSH)) this.kick(chatId);
  }

  /** A message just entered the outbox: shown (onUpdate) and sent when its chat's turn comes. */
  queued(entry: OutboxEntry): OutboxEntry {
    this.options.onUpdate(entry);
    this.kick(entry.chatId);
    return entry;
  }

  /** Sends what is queued in one chat (a message was just added there). */
  kick(chatId: string): void {
    if (!this.options.sender.canSend() || this.isStopped) return;
    if (this.running.has(chatId)) {
      this.again.add(chatId);
      return;
    }
    if (this.running.size >= this.maxConcurrentChats) {
      this.waiting.add(chatId);
      return;
    }
    this.running.set(chatId, this.work(chatId));
  }

  /** Stops sending; resolves when the chats being worked on have settled. */
  async stop(): Promise<void> {
    this.isStopped = true;
    this.cancelRetry?.();
    this.waiting.clear();
    await Promise.all(this.running.values());
  }

  private async work(chatId: string): Promise<void> {
    try {
      let outcome: Outcome = "sent";
      do {
        this.again.delete(chatId);
        outcome = await this.sendChat(chatId);
        // A message added after the chat looked empty sets `again`: look once more.
      } while (outcome !== "retry-later" && this.again.has(chatId) && this.options.sender.canSend() && !this.isStopped);
    } catch (error) {
      this.options.onError(error);
    } finally {
      this.running.delete(chatId);
      this.again.delete(chatId);
      this.startWaiting();
    }
  }

  /** Sends the chat's queued messages in order until none is left or one must wait. */
  private async sendChat(chatId: string): Promise<Outcome> {
    while (this.options.sender.canSend() && !this.isStopped) {
      const entry = await this.options.store.nextQueued(chatId);
      if (entry === undefined) return "sent";
      const outcome = await this.sendOne(entry);
      if (outcome === "retry-later") return outcome;
    }
    return "retry-later";
  }

  private async sendOne(entry: OutboxEntry): Promise<Outcome> {
    let response: SendMessageResponse;
    try {
      response = await this.options.sender.send(entry);
    } catch (error) {
      return this.onSendFailed(entry, error);
    }
    this.retryAttempt = 0;
    const updated = await this.options.store.markSent(entry.messageId, response.seq);
    if (updated !== undefined) this.options.onUpdate(updated);
    return "sent";
  }

  private async onSendFailed(entry: OutboxEntry, error: unknown): Promise<Outcome> {
    const problem = toProblem(error, this.options.clock.nowMs());
    const { logger, store } = this.options;
    if (error instanceof RemessengerError && !shouldRetry(error)) {
      logger.warn(
        { chatId: entry.chatId, messageId: entry.messageId, code: problem.code, reason: problem.message },
        "server refused a message",
      );
      const failed = await store.markFailed(entry.messageId, problem);
      if (failed !== undefined) this.options.onUpdate(failed);
      return "failed";
    }
    logger.info(
      { chatId: entry.chatId, messageId: entry.messageId, code: problem.code, reason: problem.message },
      "send will be retried",
    );
    const updated = await store.markProblem(entry.messageId, problem);
    if (updated !== undefined) this.options.onUpdate(updated);
    this.scheduleRetry(error);
    return "retry-later";
  }

  /**
   * While connected, nothing else would trigger another flush, so a timer
   * does; without a connection the next connect flushes anyway.
   */
  private scheduleRetry(error: unknown): void {
    if (this.cancelRetry !== undefined || !this.options.sender.canSend() || this.isStopped) return;
    this.retryAttempt += 1;
    const hinted = error instanceof RemessengerError ? error.retryAfterMs : 0;
    const delay =
      hinted > 0
        ? hinted
        : backoffDelay(this.retryAttempt, this.options.random, this.options.retryBackoff ?? DEFAULT_BACKOFF);
    this.cancelRetry = this.options.clock.setTimer(() => {
      this.cancelRetry = undefined;
      drop(this.flushAll(), (failure) => {
        this.options.onError(failure);
      });
    }, delay);
  }

  private startWaiting(): void {
    for (const chatId of this.waiting) {
      if (this.running.size >= this.maxConcurrentChats) return;
      this.waiting.delete(chatId);
      this.kick(chatId);
    }
  }
}

/** How a failed send shows in the outbox: the server's code, or NETWORK. */
export function toProblem(error: unknown, atMs: number): OutboxProblem {
  if (error instanceof RemessengerError) return { code: errorCodeName(error.code), message: error.message, atMs };
  return { code: "NETWORK", message: error instanceof Error ? error.message : String(error), atMs };
}
