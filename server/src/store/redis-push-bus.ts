/**
 * The PushBus (core/push-bus.ts) for many nodes, on Redis sharded pub/sub.
 *
 * - One channel per user, `<key prefix>{user:ID}:push`, in the user's hash slot:
 *   SPUBLISH goes only to the master of that slot (and its replicas), not to
 *   every node of the cluster as classic PUBLISH would, and only the nodes
 *   with a subscriber for that user receive it. Redis is the presence list.
 * - Local listeners are called at publish as on one node (synchronously, or
 *   in slices of turns for a large group: core/sliced-delivery.ts); the
 *   event also goes to Redis for the other nodes, and this node ignores its
 *   own copy (PushEventBatch.origin_node_id) without decoding it.
 * - The events published on one channel in one turn of the event loop leave
 *   as one SPUBLISH (a PushEventBatch, in order): a chat actor publishes a
 *   whole appended batch at once, and Redis pub/sub, sent and received, was
 *   half of a node's CPU per message when it went one event at a time.
 * - A node subscribes a user's channel while it has a listener for the user;
 *   ready(user) resolves once SSUBSCRIBE is confirmed, so a pump that reads
 *   the store after it misses nothing published later.
 * - A group's events go once to the group's channel, `{chat:ID}:push` (the
 *   chat's slot), whatever its size: a node subscribes it while it watches the
 *   group for some user connected here (watchGroup) and hands each event to
 *   those users' listeners. So a message to 10,000 members costs one SPUBLISH,
 *   not 10,000.
 * - Pub/sub is at most once: when the subscriber connection comes back after
 *   a drop or a failover, every listener gets a `resync` and reads the store.
 *   A lost event delays a push; it never loses a message (the store has it).
 */
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { PushEvent, PushEventBatch } from "@remessenger/protocol";
import type { BusEvent, BusListener, GroupWatch, PushBus } from "../core/push-bus.ts";
import { SlicedDelivery } from "../core/sliced-delivery.ts";
import { type RedisClient, type RedisTarget, connectRedis, isCluster } from "./redis-connection.ts";

export interface RedisPushBusOptions {
  /** This node's id, to skip its own events coming back. */
  nodeId: string;
  onError(error: unknown): void;
}

/** A batch for one channel is published early once its events reach this size. */
const MAX_BATCH_BYTES = 512 * 1024;
/** PushEventBatch.events, field 2, length-delimited: (2 << 3) | 2. */
const EVENTS_FIELD_TAG = 18;

function channelKey(userId: string): string {
  return `{user:${userId}}:push`;
}

function groupChannelKey(chatId: string): string {
  return `{chat:${chatId}}:push`;
}

export class RedisPushBus implements PushBus {
  private readonly publisher: RedisClient;
  private readonly subscriber: RedisClient;
  private readonly options: RedisPushBusOptions;
  private readonly listeners = new Map<string, Set<BusListener>>();
  private readonly subscribed = new Map<string, Promise<void>>();
  private readonly slices = new SlicedDelivery<BusEvent>(this.listeners);
  /** Per watched group, the users of this node watching it and how many watches each holds. */
  private readonly groupWatchers = new Map<string, Map<string, number>>();
  private readonly groupSubscribed = new Map<string, Promise<void>>();
  private hasConnected = false;
  private readonly ownOrigin: Buffer;
  /** Per channel, the events published this turn and not yet sent to Redis. */
  private readonly outbox = new Map<string, { events: Uint8Array[]; bytes: number }>();
  private isFlushScheduled = false;
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
    // origin_node_id is field 1, encoded first: every batch this node publishes starts with these bytes.
    this.ownOrigin = Buffer.from(PushEventBatch.encode({ originNodeId: options.nodeId, events: [] }).finish());
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
    const bytes = this.encode(event);
    for (const userId of userIds) this.send(channelKey(userId), bytes);
  }

  publishToGroup(chatId: string, memberUserIds: readonly string[], event: BusEvent): void {
    this.deliverLocally(memberUserIds, event);
    if (event.kind === "resync") return;
    this.send(groupChannelKey(chatId), this.encode(event));
  }

  watchGroup(userId: string, chatId: string): GroupWatch {
    let users = this.groupWatchers.get(chatId);
    if (users === undefined) {
      users = new Map();
      this.groupWatchers.set(chatId, users);
    }
    users.set(userId, (users.get(userId) ?? 0) + 1);
    let ready = this.groupSubscribed.get(chatId);
    if (ready === undefined) {
      ready = this.subscriber.ssubscribe(this.prefixed(groupChannelKey(chatId))).then(() => undefined);
      this.groupSubscribed.set(chatId, ready);
    }
    let isStopped = false;
    return {
      ready,
      stop: () => {
        if (isStopped) return;
        isStopped = true;
        const current = this.groupWatchers.get(chatId);
        const count = current?.get(userId) ?? 0;
        if (current === undefined || count === 0) return;
        if (count > 1) current.set(userId, count - 1);
        else current.delete(userId);
        if (current.size > 0) return;
        this.groupWatchers.delete(chatId);
        const pending = this.groupSubscribed.get(chatId);
        this.groupSubscribed.delete(chatId);
        void pending
          ?.then(() =>
            this.groupWatchers.has(chatId)
              ? undefined
              : this.subscriber.sunsubscribe(this.prefixed(groupChannelKey(chatId))),
          )
          .catch((error: unknown) => this.options.onError(error));
      },
    };
  }

  /** The event's PushEvent bytes: encoded once, whatever the number of channels it goes to. */
  private encode(event: Exclude<BusEvent, { kind: "resync" }>): Uint8Array {
    return PushEvent.encode({
      event:
        event.kind === "message"
          ? { $case: "message", value: { message: event.message, senderCaughtUp: event.senderCaughtUp } }
          : event.kind === "left"
            ? { $case: "left", value: { chatId: event.chatId } }
            : { $case: "receipt", value: event.receipt },
    }).finish();
  }

  /** Queues the event for the channel's batch of this turn. */
  private send(channel: string, bytes: Uint8Array): void {
    let batch = this.outbox.get(channel);
    if (batch === undefined) {
      batch = { events: [], bytes: 0 };
      this.outbox.set(channel, batch);
    }
    batch.events.push(bytes);
    batch.bytes += bytes.byteLength;
    this.publishedCount += 1;
    if (batch.bytes >= MAX_BATCH_BYTES) this.publishBatch(channel);
    if (this.isFlushScheduled) return;
    this.isFlushScheduled = true;
    // After every I/O callback of this turn, as the store's group commit.
    setImmediate(() => {
      this.isFlushScheduled = false;
      for (const queued of [...this.outbox.keys()]) this.publishBatch(queued);
    });
  }

  private publishBatch(channel: string): void {
    const batch = this.outbox.get(channel);
    if (batch === undefined) return;
    this.outbox.delete(channel);
    // PushEventBatch { origin_node_id, events }: the encoded events are framed
    // as the repeated field's elements, exactly as PushEventBatch.encode would.
    const writer = new BinaryWriter().raw(this.ownOrigin);
    for (const event of batch.events) writer.uint32(EVENTS_FIELD_TAG).bytes(event);
    const payload = writer.finish();
    // The publisher is a keyed client: it prepends its key prefix to the channel itself.
    this.publisher
      .spublish(channel, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength))
      .catch((error: unknown) => {
        // The receivers' pumps catch up from the store on their next event or resync.
        this.options.onError(error);
      });
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

  /** Users with a listener on this node, and events sent to and received from other nodes, for metrics. */
  get stats(): { users: number; published: number; received: number } {
    return { users: this.listeners.size, published: this.publishedCount, received: this.receivedCount };
  }

  async close(): Promise<void> {
    for (const channel of [...this.outbox.keys()]) this.publishBatch(channel);
    this.subscriber.disconnect();
    await Promise.resolve();
  }

  /** The full channel name: the store's key prefix, then the user's hash tag. */
  private channelOf(userId: string): string {
    return this.prefixed(channelKey(userId));
  }

  private prefixed(channel: string): string {
    return `${this.publisher.options.keyPrefix ?? ""}${channel}`;
  }

  /** The local users an event on `channel` is for: the channel's user, or the group's watchers. */
  private recipientsOf(channel: string): string[] {
    const user = /\{user:([^}]+)\}:push$/.exec(channel)?.[1];
    if (user !== undefined) return this.listeners.has(user) ? [user] : [];
    const chatId = /\{chat:([^}]+)\}:push$/.exec(channel)?.[1];
    const watchers = chatId === undefined ? undefined : this.groupWatchers.get(chatId);
    return watchers === undefined ? [] : [...watchers.keys()];
  }

  private onRemote(channel: string, payload: Buffer): void {
    // Our own events come back when we also subscribe their users: skip them undecoded.
    if (this.ownOrigin.length > 0 && payload.subarray(0, this.ownOrigin.length).equals(this.ownOrigin)) return;
    const userIds = this.recipientsOf(channel);
    if (userIds.length === 0) return;
    let decoded: PushEventBatch;
    try {
      decoded = PushEventBatch.decode(payload);
    } catch (error) {
      this.options.onError(error);
      return;
    }
    if (decoded.originNodeId === this.options.nodeId) return;
    for (const { event } of decoded.events) {
      if (event === undefined) continue;
      this.receivedCount += 1;
      this.deliverRemote(userIds, event);
    }
  }

  private deliverRemote(userIds: readonly string[], event: NonNullable<PushEvent["event"]>): void {
    if (event.$case === "message") {
      const { message, senderCaughtUp } = event.value;
      if (message !== undefined) this.deliverLocally(userIds, { kind: "message", message, senderCaughtUp });
    } else if (event.$case === "left") {
      this.deliverLocally(userIds, { kind: "left", chatId: event.value.chatId });
    } else {
      this.deliverLocally(userIds, { kind: "receipt", receipt: event.value });
    }
  }

  /** This node's listeners of `userIds`, in publish order; a large group's in slices of turns (sliced-delivery.ts). */
  private deliverLocally(userIds: readonly string[], event: BusEvent): void {
    this.slices.hand(userIds, event);
  }

  private deliverToAll(event: BusEvent): void {
    for (const set of this.listeners.values()) for (const listener of set) listener(event);
  }
}
