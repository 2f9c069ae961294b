/**
 * The receive side's bookkeeping: which pushed messages are new, and what
 * may be acked. Pure state, no I/O; the session stores and sends.
 *
 * Invariants:
 * - Per chat, `highestStored` is the highest seq known to be in the local
 *   store; a message at or below it is a duplicate: not stored again, but
 *   acked (the server may not have our ack if the connection dropped).
 * - A seq becomes ackable only after the message was stored (`stored`) or
 *   found a duplicate (`skipped`): nothing is acked before it is durable.
 * - Acks are cumulative per chat and only move forward on one connection;
 *   `startConnection` forgets what was acked on the previous one, because an
 *   ack in flight when a connection drops may be lost.
 */
import type { ChatAck } from "@remessenger/protocol";

export type InboxVerdict = "new" | "duplicate";

export class Inbox {
  private readonly highestStored: Map<string, number>;
  /** Per chat, the highest seq stored or skipped on this connection. */
  private readonly ackable = new Map<string, number>();
  /** Per chat, the highest seq acked on this connection. */
  private readonly acked = new Map<string, number>();
  private unackedCount = 0;

  constructor(highestStored: ReadonlyMap<string, number> = new Map()) {
    this.highestStored = new Map(highestStored);
  }

  /** Whether a pushed message must be stored, or is one we have. */
  classify(chatId: string, seq: number): InboxVerdict {
    return seq > (this.highestStored.get(chatId) ?? 0) ? "new" : "duplicate";
  }

  /** The message is durable in the local store. */
  stored(chatId: string, seq: number): void {
    if (seq > (this.highestStored.get(chatId) ?? 0)) this.highestStored.set(chatId, seq);
    this.markAckable(chatId, seq);
  }

  /** The message was a duplicate: nothing to store, but it must be acked. */
  skipped(chatId: string, seq: number): void {
    this.markAckable(chatId, seq);
  }

  /** Messages stored or skipped since the last `takeAcks`. */
  get unacked(): number {
    return this.unackedCount;
  }

  /** The acks to send now (at most `max` chats; the rest stay for the next call). */
  takeAcks(max: number): ChatAck[] {
    const acks: ChatAck[] = [];
    for (const [chatId, throughSeq] of this.ackable) {
      if (acks.length >= max) return acks;
      if (throughSeq > (this.acked.get(chatId) ?? 0)) {
        acks.push({ chatId, throughSeq });
        this.acked.set(chatId, throughSeq);
      }
    }
    this.unackedCount = 0;
    return acks;
  }

  /** Everything acked or ackable on this connection, to confirm with a request. */
  currentAcks(): ChatAck[] {
    return [...this.ackable].map(([chatId, throughSeq]) => ({ chatId, throughSeq }));
  }

  /** A new connection begins: acks sent on the old one may never have arrived. */
  startConnection(): void {
    this.ackable.clear();
    this.acked.clear();
    this.unackedCount = 0;
  }

  highestStoredSeq(chatId: string): number {
    return this.highestStored.get(chatId) ?? 0;
  }

  private markAckable(chatId: string, seq: number): void {
    if (seq > (this.ackable.get(chatId) ?? 0)) this.ackable.set(chatId, seq);
    this.unackedCount += 1;
  }
}
