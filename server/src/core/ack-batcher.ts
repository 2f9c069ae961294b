/**
 * Acks of one chat, taken to the store together. Every member device of a
 * group acks each message within moments of the others (10,000 of them for a
 * large group); one store step per ack would queue them one by one behind
 * each other and ahead of the next message's append. Here, while one batch of
 * a chat is in the store, the acks that arrive wait and go as the next batch,
 * so a lone ack goes at once and a burst costs a few store steps.
 *
 * Invariants: at most one store call per chat at a time; each caller gets its
 * own device's cursor (as Store.ackDelivered); waiting acks are bounded.
 */
import { RemessengerError, ErrorCode } from "@remessenger/protocol";
import type { DeviceAck, Store } from "../store/store.ts";

/** Acks handed to the store in one step. */
export const MAX_ACK_BATCH = 4_096;
/** Acks waiting for one chat; beyond it, acks are refused and the client acks again later. */
export const MAX_WAITING_ACKS = 100_000;

interface PendingAck extends DeviceAck {
  resolve(cursor: number | undefined): void;
  reject(error: unknown): void;
}

interface ChatAcks {
  waiting: PendingAck[];
  isRunning: boolean;
}

export class AckBatcher {
  private readonly store: Pick<Store, "ackDeliveredMany">;
  private readonly chats = new Map<string, ChatAcks>();

  constructor(store: Pick<Store, "ackDeliveredMany">) {
    this.store = store;
  }

  /** Moves the device's cursor in the chat; resolves with it (undefined: the device has none there). */
  ack(chatId: string, deviceId: string, throughSeq: number): Promise<number | undefined> {
    let chat = this.chats.get(chatId);
    if (chat === undefined) {
      chat = { waiting: [], isRunning: false };
      this.chats.set(chatId, chat);
    }
    if (chat.waiting.length >= MAX_WAITING_ACKS) {
      return Promise.reject(
        new RemessengerError(ErrorCode.ERROR_CODE_RATE_LIMITED, "too many acks waiting, ack again shortly", {
          retryAfterMs: 200,
        }),
      );
    }
    const { promise, resolve, reject } = Promise.withResolvers<number | undefined>();
    chat.waiting.push({ deviceId, throughSeq, resolve, reject });
    if (!chat.isRunning) {
      chat.isRunning = true;
      void this.drain(chatId, chat);
    }
    return promise;
  }

  private async drain(chatId: string, chat: ChatAcks): Promise<void> {
    // Let the acks of this turn (one frame may carry several, many sockets read at once) join the first batch.
    await Promise.resolve();
    while (chat.waiting.length > 0) {
      const batch = chat.waiting.splice(0, MAX_ACK_BATCH);
      try {
        const cursors = await this.store.ackDeliveredMany(chatId, batch);
        batch.forEach((pending, i) => {
          pending.resolve(cursors[i]);
        });
      } catch (error) {
        for (const pending of batch) pending.reject(error);
      }
    }
    chat.isRunning = false;
    this.chats.delete(chatId);
  }
}
