/**
 * How the core tells connected devices that something happened in their chats.
 * The core publishes to users; whoever holds a device connection subscribes for
 * its user. One node uses the in-process bus; several nodes share one through
 * Redis (store/redis-push-bus.ts), which is why events are plain data.
 */
import type { Message, Receipt } from "../../../client/core/src/wire/proto.ts";

export type BusEvent =
  /**
   * A message became durable in a chat the user is a member of.
   * `senderCaughtUp`: the sending device's cursor moved onto it (no echo needed).
   */
  | { kind: "message"; message: Message; senderCaughtUp: boolean }
  /** A device's delivery cursor moved in a chat the user is a member of. */
  | { kind: "receipt"; receipt: Receipt }
  /** The user is no longer a member of the chat (removed from a group, or left): forget it. */
  | { kind: "left"; chatId: string }
  /**
   * Events may have been lost (the bus' connection dropped and came back):
   * whoever delivers must read the store again instead of waiting for them.
   */
  | { kind: "resync" };

export type BusListener = (event: BusEvent) => void;

export interface PushBus {
  publish(userIds: readonly string[], event: BusEvent): void;
  /** Returns the function that ends the subscription. */
  subscribe(userId: string, listener: BusListener): () => void;
  /**
   * Resolves once events for `userId` published anywhere (other nodes too)
   * reach this node's listeners; a subscriber reads the store only after it.
   */
  ready(userId: string): Promise<void>;
}

/** The single-node bus: listeners are called synchronously, in publish order. */
export class LocalPushBus implements PushBus {
  private readonly listeners = new Map<string, Set<BusListener>>();

  publish(userIds: readonly string[], event: BusEvent): void {
    for (const userId of userIds) {
      const set = this.listeners.get(userId);
      if (set === undefined) continue;
      for (const listener of set) listener(event);
    }
  }

  subscribe(userId: string, listener: BusListener): () => void {
    let set = this.listeners.get(userId);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(userId, set);
    }
    set.add(listener);
    return () => {
      const current = this.listeners.get(userId);
      if (current === undefined) return;
      current.delete(listener);
      if (current.size === 0) this.listeners.delete(userId);
    };
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  /** Subscribed users, for metrics. */
  get userCount(): number {
    return this.listeners.size;
  }
}
