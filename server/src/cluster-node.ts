/**
 * What a server adds when it keeps its data in Redis, where other nodes may
 * share it (composed by main.ts): the Redis push bus, the shard leases, the
 * chat router and the node link (forwarded sends in and out).
 *
 * Start-up: prepare() before the Messenger exists (it needs the bus and the
 * router), start() once it does: listen for other nodes, then join (announce,
 * take this node's shards). Shut-down: stop() hands every shard over (drains
 * its chats, releases the lease) before the store closes.
 */
import type { Logger } from "pino";
import { ChatRouter } from "./core/chat-routing.ts";
import type { Clock } from "./core/clock.ts";
import { ShardLeases } from "./core/lease.ts";
import type { Messenger } from "./core/messenger.ts";
import { shardOf } from "./core/shard-placement.ts";
import { NodeLinkServer, NodeLinks } from "./edge/node-forwarding.ts";
import type { NodesConfig } from "./config.ts";
import type { RedisTarget } from "./store/redis-connection.ts";
import { RedisLeaseStore } from "./store/redis-lease-store.ts";
import { RedisPushBus } from "./store/redis-push-bus.ts";
import type { RedisStore } from "./store/redis-store.ts";

export interface ClusterNodeOptions {
  nodeId: string;
  config: NodesConfig;
  store: RedisStore;
  target: RedisTarget;
  secret: Uint8Array;
  clock: Clock;
  log: Logger;
}

export interface ClusterNodeStats {
  shardsOwned: number;
  liveNodes: number;
  forwardedOut: number;
  forwardedIn: number;
  rerouted: number;
  fenced: number;
  busUsers: number;
}

export class ClusterNode {
  readonly bus: RedisPushBus;
  readonly router: ChatRouter;
  readonly nodeId: string;
  private readonly options: ClusterNodeOptions;
  private readonly links: NodeLinks;
  private leases: ShardLeases | undefined;
  private server: NodeLinkServer | undefined;
  private messenger: Messenger | undefined;
  private forwardedIn = 0;

  static async prepare(options: ClusterNodeOptions): Promise<ClusterNode> {
    const log = options.log;
    const bus = await RedisPushBus.open(options.store.redis, options.target, {
      nodeId: options.nodeId,
      onError: (error) => {
        log.warn({ err: error }, "push bus error");
      },
    });
    return new ClusterNode(options, bus);
  }

  private constructor(options: ClusterNodeOptions, bus: RedisPushBus) {
    this.options = options;
    this.nodeId = options.nodeId;
    this.bus = bus;
    this.links = new NodeLinks(options.nodeId, options.secret, options.log);
    const { log } = options;
    // The leases need the node's address, known only once its listener is up:
    // they are made in start(); until then the router resolves nothing.
    const leasesRef = (): ShardLeases => {
      if (this.leases === undefined) throw new Error("cluster node not started");
      return this.leases;
    };
    this.router = new ChatRouter(
      {
        route: (shard) => leasesRef().route(shard),
        resolve: (shard, isForwarded) => leasesRef().resolve(shard, isForwarded),
        tokenFor: (shard) => this.leases?.tokenFor(shard),
        markLost: (shard) => this.leases?.markLost(shard),
        forget: (shard) => this.leases?.forget(shard),
      },
      this.links,
    );
    log.debug({ nodeId: this.nodeId }, "cluster node prepared");
  }

  /** Listens for other nodes, then joins: announces itself and takes its shards. */
  async start(messenger: Messenger): Promise<void> {
    const { config, log, secret, clock, store } = this.options;
    this.messenger = messenger;
    this.server = new NodeLinkServer({
      messenger,
      secret,
      log,
      onForwardedIn: () => {
        this.forwardedIn += 1;
      },
    });
    const { host } = config.nodeListen;
    const shownHost = host.includes(":") ? `[${host}]` : host;
    const port = await this.server.listen(`${shownHost}:${config.nodeListen.port}`);
    const address = `${shownHost}:${port}`;
    this.leases = new ShardLeases({
      self: { nodeId: this.nodeId, address },
      store: RedisLeaseStore.on(store.redis, {
        waitReplicas: config.durability === "master" ? 0 : 1,
        waitTimeoutMs: 1_000,
      }),
      clock,
      ttlMs: config.leaseTtlMs,
      onAcquired: (shard, token) => {
        log.info({ shard, token }, "shard acquired");
      },
      onLost: (shard) => {
        log.info({ shard }, "shard released or lost");
      },
      drain: (shard) => messenger.actors.drained((chatId) => shardOf(chatId) === shard),
      onError: (error) => {
        log.warn({ err: error }, "lease upkeep failed; retrying next tick");
      },
    });
    await this.leases.start();
    log.info({ nodeAddress: address, shards: this.leases.ownedCount }, "joined the nodes");
  }

  get stats(): ClusterNodeStats {
    const router = this.router.stats;
    return {
      shardsOwned: this.leases?.ownedCount ?? 0,
      liveNodes: this.leases?.liveNodeCount ?? 0,
      forwardedOut: router.forwarded,
      forwardedIn: this.forwardedIn,
      rerouted: router.rerouted,
      fenced: router.fenced,
      busUsers: this.bus.stats.users,
    };
  }

  /**
   * Hands every shard over, then closes the node link and the bus. Bounded:
   * with Redis unreachable the handover cannot finish, and the leases then
   * expire by themselves (the other nodes take the shards after one TTL).
   */
  async stop(): Promise<void> {
    const { log, config } = this.options;
    const deadlineMs = 2 * config.leaseTtlMs + 5_000;
    const handedOver = await withDeadline(this.leases?.stop() ?? Promise.resolve(), deadlineMs);
    if (!handedOver)
      log.warn({ deadlineMs }, "shards not handed over in time (Redis unreachable?); their leases will expire");
    await withDeadline(this.messenger?.drain() ?? Promise.resolve(), deadlineMs);
    await this.server?.close();
    this.links.close();
    await this.bus.close();
  }
}

/** Whether `work` finished within `ms` (it keeps running either way). */
async function withDeadline(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => {
      resolve(false);
    }, ms);
  });
  try {
    return await Promise.race([work.then(() => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}
