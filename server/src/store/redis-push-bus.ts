/**
 * The PushBus (core/push-bus.ts) for many nodes, on Redis sharded pub/sub.
 *
 * - One channel per user, `<key prefix>{user:ID}:push`, in the user's hash slot:
 *   SPUBLISH goes only to the master of that slot (and its replicas), not to
 *   every node of the cluster as classic PUBLISH would, and only the nodes
 *   with a subscriber for that user receive it. Redis is the presence list.
 * - Local listeners are called synchronously at publish, as on one node; the
 *   event also goes to Redis for the other nodes, and this node ignores its
 *   own copy (PushEvent.origin_node_id).
 * - A node subscribes a user's channel while it has a listener for the user;
 *   ready(user) resolves once SSUBSCRIBE is confirmed, so a pump that reads
 *   the store after it misses nothing published later.
 * - Pub/sub is at most once: when the subscriber connection comes back after
 *   a drop or a failover, every listener gets a `resync` and reads the store.
 *   A lost event delays a push; it never loses a message (the store has it).
 */
import { PushEvent } from "../../../client/core/src/wire/proto.ts";
import type { BusEvent, BusListener, PushBus } from "../core/push-bus.ts";
import { type RedisClient, type RedisTarget, connectRedis, isCluster } from "./redis-connection.ts";

export interface RedisPushBusOptions {
  /** This node's id, to skip its own events coming back. */
  nodeId: string;
  onError(error: unknown): void;
}

function channelKey(userId: string): string {
  return `{user:${userId}}:push`;
}

export class RedisPushBus implements PushBus {
  private readonly publisher: RedisClient;
  private readonly subscriber: RedisClient;
  private readonly options: RedisPushBusOptions;
  private readonly listeners = new Map<string, Set<BusListener>>();
  private readonly subscribed = new Map<string, Promise<void>>();
  private hasConnected = false;
  private publishedCount = 0;
  private receivedCount = 0;

  /**
   * Publishes on `publisher` (the store's connection) and opens a subscriber
   * connection of its own (a connection in subscribe mode runs no commands).
   */
  static async open(publisher: RedisClient, target: RedisTarget, options: RedisPushBusOptions): Promise<RedisPushBus> {
    const subscriber = await connectRedis(target, {
      isSubscriber: true,
      onConnectionError: (error) => {
        options.onError(error);
      },
    });
    return new RedisPushBus(publisher, subscriber, options);
  }

  private constructor(publisher: RedisClient, subscriber: RedisClient, options: RedisPushBusOptions) {
    this.publisher = publisher;
    this.subscriber = subscriber;
    this.options = options;
    subscriber.on("smessageBuffer", (channel: Buffer, payload: Buffer) => {
      this.onRemote(channel.toString("utf8"), payload);
    });
    // Events published while the subscription was down are gone: tell every listener.
    const onResubscribed = (): void => {
      if (this.hasConnected) this.deliverToAll({ kind: "resync" });
      this.hasConnected = true;
    };
    if (isCluster(subscriber)) subscriber.on("subscribersReady", onResubscribed);
    else subscriber.on("ready", onResubscribed);
    this.hasConnected = !isCluster(subscriber);
  }

  publish(userIds: readonly string[], event: BusEvent): void {
    this.deliverLocally(userIds, event);
    if (event.kind === "resync") return;
    const bytes = Buffer.from(
      PushEvent.encode({
        originNodeId: this.options.nodeId,
        event:
          event.kind === "message"
            ? { $case: "message", value: { message: event.message, senderCaughtUp: event.senderCaughtUp } }
            : event.kind === "left"
              ? { $case: "left", value: { chatId: event.chatId } }
              : { $case: "receipt", value: event.receipt },
      }).finish(),
    );
    for (const userId of userIds) {
      this.publishedCount += 1;
      // The publisher is a keyed client: it prepends its key prefix to the channel itself.
      this.publisher.spublish(channelKey(userId), bytes).catch((error: unknown) => {
        // The receivers' pumps catch up from the store on their next event or resync.
        this.options.onError(error);
      });
    }
  }

  subscribe(userId: string, listener: BusListener): () => void {
    let set = this.listeners.get(userId);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(userId, set);
    }
    set.add(listener);
    if (!this.subscribed.has(userId)) {
      const channel = this.channelOf(userId);
      this.subscribed.set(
        userId,
        this.subscriber.ssubscribe(channel).then(() => undefined),
      );
    }
    return () => {
      const current = this.listeners.get(userId);
      if (current === undefined) return;
      current.delete(listener);
      if (current.size > 0) return;
      this.listeners.delete(userId);
      const pending = this.subscribed.get(userId);
      this.subscribed.delete(userId);
      void pending
        ?.then(() => (this.listeners.has(userId) ? undefined : this.subscriber.sunsubscribe(this.channelOf(userId))))
        .catch((error: unknown) => this.options.onError(error));
    };
  }

  ready(userId: string): Promise<void> {
    return this.subscribed.get(userId) ?? Promise.resolve();
  }

  /** Users with a listener on this node, and events sent and received, for metrics. */
  get stats(): { users: number; published: number; received: number } {
    return { users: this.listeners.size, published: this.publishedCount, received: this.receivedCount };
  }

  async close(): Promise<void> {
    this.subscriber.disconnect();
    await Promise.resolve();
  }

  /** The full channel name: the store's key prefix, then the user's hash tag. */
  private channelOf(userId: string): string {
    return `${this.publisher.options.keyPrefix ?? ""}${channelKey(userId)}`;
  }

  private userOf(channel: string): string | undefined {
    const match = /\{user:([^}]+)\}:push$/.exec(channel);
    return match?.[1];
  }

  private onRemote(channel: string, payload: Buffer): void {
    const userId = this.userOf(channel);
    if (userId === undefined || !this.listeners.has(userId)) return;
    let decoded: PushEvent;
    try {
      decoded = PushEvent.decode(payload);
    } catch (error) {
      this.options.onError(error);
      return;
    }
    if (decoded.originNodeId === this.options.nodeId || decoded.event === undefined) return;
    this.receivedCount += 1;
    const { event } = decoded;
    if (event.$case === "message") {
      const { message, senderCaughtUp } = event.value;
      if (message !== undefined) this.deliverLocally([userId], { kind: "message", message, senderCaughtUp });
    } else if (event.$case === "left") {
      this.deliverLocally([userId], { kind: "left", chatId: event.value.chatId });
    } else {
      this.deliverLocally([userId], { kind: "receipt", receipt: event.value });
    }
  }

  private deliverLocally(userIds: readonly string[], event: BusEvent): void {
    for (const userId of userIds) {
      const set = this.listeners.get(userId);
      if (set === undefined) continue;
      for (const listener of set) listener(event);
    }
  }

  private deliverToAll(event: BusEvent): void {
    for (const set of this.listeners.values()) for (const listener of set) listener(event);
  }
}
