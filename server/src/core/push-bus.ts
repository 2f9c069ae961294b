/**
 * How the core tells connected devices that something happened in their chats.
 * The core publishes to users; whoever holds a device connection subscribes for
 * its user. One node uses the in-process bus; several nodes share one through
 * Redis (store/redis-push-bus.ts), which is why events are plain data.
 */
import type { Message, Receipt } from "@remessenger/protocol";
import { SlicedDelivery } from "./sliced-delivery.ts";

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

/** A node's interest in a group's events for one of its users (see PushBus.watchGroup). */
export interface GroupWatch {
  /** Resolves once events published to the group anywhere reach this node. */
  readonly ready: Promise<void>;
  stop(): void;
}

export interface PushBus {
  publish(userIds: readonly string[], event: BusEvent): void;
  /**
   * A group's event, published once whatever the group's size: this node's
   * listeners of `memberUserIds` get it at once; other nodes get one copy
   * through the group's channel and hand it to the users they watch it for
   * (watchGroup). Never one publish per member.
   */
  publishToGroup(chatId: string, memberUserIds: readonly string[], event: BusEvent): void;
  /**
   * This node wants the group's events (publishToGroup) for `userId`'s
   * listeners here, until `stop()`. Watches are counted: the last stop ends it.
   */
  watchGroup(userId: string, chatId: string): GroupWatch;
  /** Returns the function that ends the subscription. */
  subscribe(userId: string, listener: BusListener): () => void;
  /**
   * Resolves once events for `userId` published anywhere (other nodes too)
   * reach this node's listeners; a subscriber reads the store only after it.
   */
  ready(userId: string): Promise<void>;
}

/**
 * The single-node bus: listeners are called in publish order, synchronously
 * for small audiences, in slices of turns for a large group (sliced-delivery.ts).
 */
export class LocalPushBus implements PushBus {
  private readonly listeners = new Map<string, Set<BusListener>>();
  private readonly slices = new SlicedDelivery<BusEvent>(this.listeners);

  publish(userIds: readonly string[], event: BusEvent): void {
    this.slices.hand(userIds, event);
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

  publishToGroup(_chatId: string, memberUserIds: readonly string[], event: BusEvent): void {
    this.publish(memberUserIds, event);
  }

  /** One node: every publish reaches every listener already. */
  watchGroup(): GroupWatch {
    return { ready: Promise.resolve(), stop: () => undefined };
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  /** Subscribed users, for metrics. */
  get userCount(): number {
    return this.listeners.size;
  }
}
