/**
 * Shard leases: which node owns which shard of chats, when many nodes share
 * one store. The LeaseStore port keeps the leases (RedisLeaseStore); this
 * module decides what to take, keep and give back.
 *
 * - A lease has a TTL and a fencing token that grows with every new owner of
 *   the shard. Appends carry the token and the store refuses older ones, so
 *   a node that was paused past its lease cannot write once the next owner
 *   wrote (see store.ts AppendOptions).
 * - Every tick (a third of the TTL) the node announces itself, renews what it
 *   holds, takes the free shards that rendezvous hashing gives it, and hands
 *   over (drains, then releases) the shards another live node should have.
 * - A node that stops renewing (killed, paused, cut off) loses its leases
 *   when they expire; its entry in the node list expires with them, so the
 *   survivors' preference moves its shards to them.
 */
import { RemessengerError, ErrorCode } from "@remessenger/protocol";
import type { Clock } from "./clock.ts";
import { SHARD_COUNT, preferredOwner } from "./shard-placement.ts";

/** A node as the others find it: its id and where its node-to-node listener is. */
export interface NodeInfo {
  nodeId: string;
  /** host:port of the internal node listener. */
  address: string;
}

export type AcquireResult =
  | { kind: "acquired"; token: number }
  /** Someone holds it (maybe this node, under an older token it forgot). */
  | { kind: "held"; nodeId: string; token: number };

export interface LeaseHolder {
  nodeId: string;
  token: number;
}

/** Where leases and the node list live (Redis); every call is one atomic step. */
export interface LeaseStore {
  /** Announces `node` for `ttlMs` and returns every live node (itself included). */
  heartbeat(node: NodeInfo, ttlMs: number): Promise<NodeInfo[]>;
  /** Removes the node from the list at once (graceful shutdown). */
  leave(nodeId: string): Promise<void>;
  /** The holder of each shard's lease, index = shard (undefined: free). */
  readLeases(shardCount: number): Promise<Array<LeaseHolder | undefined>>;
  /** Takes the lease when free, with a token above every earlier one. */
  acquire(shard: number, nodeId: string, ttlMs: number): Promise<AcquireResult>;
  /** Extends the lease if this node still holds it with this token. */
  renew(shard: number, nodeId: string, token: number, ttlMs: number): Promise<boolean>;
  /** Gives the lease up if held with this token. */
  release(shard: number, nodeId: string, token: number): Promise<void>;
}

/** The node does not (or no longer) own the chat's shard: route the request again. */
export class NotOwnerError extends RemessengerError {
  readonly shard: number;

  constructor(shard: number, reason: string) {
    super(ErrorCode.ERROR_CODE_UNAVAILABLE, `shard ${shard} ${reason}, retry`, { retryAfterMs: 200 });
    this.shard = shard;
  }
}

export type ShardRoute =
  | { kind: "local"; token: number }
  | { kind: "remote"; node: NodeInfo }
  /** Nobody live is known to hold it and this node should not take it. */
  | { kind: "unavailable"; reason: string };

export interface ShardLeasesOptions {
  self: NodeInfo;
  store: LeaseStore;
  clock: Clock;
  ttlMs: number;
  shardCount?: number;
  /** A shard was taken: nothing to do yet, for logs and metrics. */
  onAcquired(shard: number, token: number): void;
  /** The lease is gone (expired, taken over, fenced): stop writing the shard. */
  onLost(shard: number): void;
  /** Finish every write of the shard before its lease is released. */
  drain(shard: number): Promise<void>;
  onError(error: unknown): void;
}

interface OwnedShard {
  token: number;
  isReleasing: boolean;
  /** When the lease was last taken or renewed (this node's clock). */
  renewedAtMs: number;
}

export class ShardLeases {
  readonly nodeId: string;
  private readonly options: ShardLeasesOptions;
  private readonly shardCount: number;
  private readonly owned = new Map<number, OwnedShard>();
  private holders: Array<LeaseHolder | undefined> = [];
  private live = new Map<string, NodeInfo>();
  private liveIds: string[] = [];
  private readonly acquiring = new Map<number, Promise<ShardRoute>>();
  /** Shards being handed over: done once drained and released. */
  private readonly handovers = new Map<number, Promise<void>>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private ticking: Promise<void> | undefined;
  private isStopped = false;

  constructor(options: ShardLeasesOptions) {
    this.options = options;
    this.nodeId = options.self.nodeId;
    this.shardCount = options.shardCount ?? SHARD_COUNT;
  }

  /** Joins: the first tick (announce, take this node's shards), then one every ttl/3. */
  async start(): Promise<void> {
    await this.tickNow();
    this.timer = setInterval(
      () => {
        void this.tickNow();
      },
      Math.max(50, Math.floor(this.options.ttlMs / 3)),
    );
    this.timer.unref();
  }

  /** One round of upkeep now (the timer's; tests drive it by hand). Never two at once. */
  tickNow(): Promise<void> {
    this.ticking ??= this.tick().finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  /** Where the chat's shard is served now, without waiting; undefined when it must be resolved. */
  route(shard: number): ShardRoute | undefined {
    const mine = this.owned.get(shard);
    if (mine !== undefined) return mine.isReleasing ? undefined : { kind: "local", token: mine.token };
    const holder = this.holders[shard];
    const node = holder === undefined ? undefined : this.live.get(holder.nodeId);
    if (node !== undefined && node.nodeId !== this.nodeId) return { kind: "remote", node };
    return undefined;
  }

  /**
   * Finds or makes an owner: the holder when live, else this node takes the
   * lease when it is the preferred node (or no preferred node is live), else
   * the preferred node — except for a request another node forwarded here
   * (`isForwarded`), which is never sent on: "unavailable" instead.
   */
  resolve(shard: number, isForwarded = false): Promise<ShardRoute> {
    const known = this.route(shard);
    // The forwarder's view sent the request here: ours may be as stale, so a remote holder is asked again.
    if (known !== undefined && (known.kind === "local" || !isForwarded)) return Promise.resolve(known);
    const handingOver = this.handovers.get(shard);
    if (handingOver !== undefined) {
      // Sends wait for the drain and the release (ordered behind the mailbox),
      // then go to the new owner; this node does not take the shard back.
      return handingOver.then(() => this.resolve(shard, isForwarded));
    }
    const preferred = preferredOwner(shard, this.liveIds);
    const other = preferred === undefined || preferred === this.nodeId ? undefined : this.live.get(preferred);
    if (other !== undefined) {
      // Another live node should own it. A forwarded send is refused, not
      // served by taking the lease: an old owner that took back a shard it
      // just handed over would undo the handover, every tick, for as long as
      // the other nodes' stale lease views send it work.
      return Promise.resolve(
        isForwarded ? { kind: "unavailable", reason: `belongs to ${other.nodeId}` } : { kind: "remote", node: other },
      );
    }
    let pending = this.acquiring.get(shard);
    if (pending === undefined) {
      pending = this.take(shard).finally(() => this.acquiring.delete(shard));
      this.acquiring.set(shard, pending);
    }
    return pending;
  }

  /**
   * The token to write `shard` with, or undefined when this node must not
   * write it. A shard being handed over still writes what its mailboxes hold.
   */
  tokenFor(shard: number): number | undefined {
    return this.owned.get(shard)?.token;
  }

  /** The store refused a write of `shard` (fenced): the lease is someone else's now. */
  markLost(shard: number): void {
    if (this.owned.delete(shard)) this.options.onLost(shard);
    this.holders[shard] = undefined;
  }

  /** A request found the recorded holder wrong: look it up again next time. */
  forget(shard: number): void {
    if (!this.owned.has(shard)) this.holders[shard] = undefined;
  }

  /** Shards held, for metrics. */
  get ownedCount(): number {
    return this.owned.size;
  }

  get liveNodeCount(): number {
    return this.liveIds.length;
  }

  /** Hands every shard over (drain, release) and leaves the node list. */
  async stop(): Promise<void> {
    this.isStopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.ticking;
    const { store } = this.options;
    await store.leave(this.nodeId).catch((error: unknown) => this.options.onError(error));
    await Promise.all([...this.owned.keys()].map((shard) => this.handOver(shard)));
  }

  private async take(shard: number): Promise<ShardRoute> {
    const { store, ttlMs } = this.options;
    const result = await store.acquire(shard, this.nodeId, ttlMs);
    if (result.kind === "acquired" || result.nodeId === this.nodeId) {
      this.owned.set(shard, { token: result.token, isReleasing: false, renewedAtMs: this.options.clock.nowMs() });
      this.holders[shard] = { nodeId: this.nodeId, token: result.token };
      this.options.onAcquired(shard, result.token);
      return { kind: "local", token: result.token };
    }
    this.holders[shard] = { nodeId: result.nodeId, token: result.token };
    const node = this.live.get(result.nodeId);
    return node === undefined
      ? { kind: "unavailable", reason: `is held by ${result.nodeId}, which is not live yet` }
      : { kind: "remote", node };
  }

  /**
   * One round of upkeep. Each step fails on its own (a Redis failover makes
   * some keys unreachable for seconds): a renewal that could not be asked
   * keeps the shard until the lease must have expired by this node's clock;
   * only a definite "not yours" or that expiry loses it.
   */
  private async tick(): Promise<void> {
    if (this.isStopped) return;
    const { store, ttlMs, self, clock } = this.options;
    try {
      const nodes = await store.heartbeat(self, ttlMs);
      this.live = new Map(nodes.map((node) => [node.nodeId, node]));
      this.liveIds = [...this.live.keys()].sort();
    } catch (error) {
      this.options.onError(error);
    }
    await Promise.all(
      [...this.owned].map(async ([shard, lease]) => {
        if (lease.isReleasing) return;
        const startedAtMs = clock.nowMs();
        try {
          if (await store.renew(shard, this.nodeId, lease.token, ttlMs)) lease.renewedAtMs = startedAtMs;
          else this.markLost(shard);
        } catch (error) {
          if (clock.nowMs() - lease.renewedAtMs >= ttlMs) this.markLost(shard);
          this.options.onError(error);
        }
      }),
    );
    try {
      this.holders = await store.readLeases(this.shardCount);
    } catch (error) {
      this.options.onError(error);
      return;
    }
    const work: Array<Promise<unknown>> = [];
    for (let shard = 0; shard < this.shardCount; shard += 1) {
      const preferred = preferredOwner(shard, this.liveIds);
      const holder = this.holders[shard];
      const mine = this.owned.get(shard);
      if (mine !== undefined && holder !== undefined && holder.nodeId !== this.nodeId) {
        this.markLost(shard); // expired and taken while we were away
      } else if (mine === undefined && holder?.nodeId === this.nodeId) {
        // Held under a token this node forgot (restarted with the same id): adopt it.
        this.owned.set(shard, { token: holder.token, isReleasing: false, renewedAtMs: clock.nowMs() });
        this.options.onAcquired(shard, holder.token);
      } else if (holder === undefined && mine === undefined && preferred === this.nodeId) {
        work.push(this.resolve(shard));
      } else if (mine !== undefined && !mine.isReleasing && preferred !== undefined && preferred !== this.nodeId) {
        work.push(this.handOver(shard));
      }
    }
    const results = await Promise.allSettled(work);
    for (const result of results) if (result.status === "rejected") this.options.onError(result.reason);
  }

  /** Stops routing the shard here, finishes its writes, then frees the lease. */
  private handOver(shard: number): Promise<void> {
    const running = this.handovers.get(shard);
    if (running !== undefined) return running;
    const mine = this.owned.get(shard);
    if (mine === undefined) return Promise.resolve();
    mine.isReleasing = true;
    const handover = (async () => {
      try {
        await this.options.drain(shard);
        await this.options.store.release(shard, this.nodeId, mine.token);
      } catch (error) {
        this.options.onError(error);
      } finally {
        this.owned.delete(shard);
        this.holders[shard] = undefined;
        this.handovers.delete(shard);
        this.options.onLost(shard);
      }
    })();
    this.handovers.set(shard, handover);
    return handover;
  }
}
