/**
 * The LeaseStore (core/lease.ts) on Redis or a Redis Cluster, beside the
 * RedisStore on the same connection.
 *
 * Key layout (after the store's key prefix), all under one hash tag:
 *   {leases}:lease:N    string  shard N's "token:nodeId", expires with the lease (PX)
 *   {leases}:token:N    string  shard N's highest token (INCR), never expires
 *   {leases}:nodes      hash    nodeId -> address of its node listener
 *   {leases}:alive      zset    nodeId, score = expiry in ms by Redis' clock
 *
 * One tag puts the leases on one master: a tick reads them all with one MGET,
 * and a failover of any other master leaves them alone (spread over every
 * master, each failover stalled some renewals and flooded the client with
 * MOVED redirects to the dead node). Each step is one Lua script
 * (lua/*-lease-*.lua, lua/heartbeat-node-2.lua). On a cluster with replicas,
 * a newly acquired lease is WAITed for, so a failover cannot hand out its
 * token twice.
 */
import { readFileSync } from "node:fs";
import type { AcquireResult, LeaseHolder, LeaseStore, NodeInfo } from "../core/lease.ts";
import { type RedisClient, attachedReplicas, connectionTo, masterOf } from "./redis-connection.ts";

const SCRIPTS = {
  acquireLease: "acquire-lease-2",
  renewLease: "renew-lease-1",
  releaseLease: "release-lease-1",
  heartbeatNode: "heartbeat-node-2",
} as const;

const LUA = Object.entries(SCRIPTS).map(([name, file]) => ({
  name,
  lua: readFileSync(new URL(`./lua/${file}.lua`, import.meta.url), "utf8"),
  numberOfKeys: Number(file.slice(file.lastIndexOf("-") + 1)),
}));

/**
 * Defines the lease scripts on the client; run before its first command (the
 * RedisStore's prepare step), like defineDeviceKeyScripts. Defined later, on a
 * client already busy, a heartbeat meeting an auto-pipelined command in one
 * event-loop turn failed ("pipeline[functionName] is not a function", ioredis
 * #1931) and the node exited.
 */
export function defineLeaseScripts(client: RedisClient): void {
  for (const { name, lua, numberOfKeys } of LUA) client.defineCommand(name, { lua, numberOfKeys });
}

type ScriptCommand = (...args: Array<string | number>) => Promise<unknown>;
type LeaseClient = RedisClient & { [Name in keyof typeof SCRIPTS]: ScriptCommand };

/** How long a lease's WAIT may hold the shared connection. */
const LEASE_WAIT_MS = 200;
const REPLICA_COUNT_TTL_MS = 2_000;

const keys = {
  lease: (shard: number) => `{leases}:lease:${shard}`,
  token: (shard: number) => `{leases}:token:${shard}`,
  nodeInfo: () => "{leases}:nodes",
  nodeAlive: () => "{leases}:alive",
};

export interface RedisLeaseStoreOptions {
  /** Replicas to WAIT for after acquiring a lease (0 on one Redis). */
  waitReplicas: number;
  waitTimeoutMs: number;
}

export class RedisLeaseStore implements LeaseStore {
  private readonly client: LeaseClient;
  private readonly options: RedisLeaseStoreOptions;
  private readonly replicaCounts = new Map<string, { count: number; atMs: number }>();

  /**
   * The lease store on an open client (the RedisStore's), whose scripts the
   * RedisStore defined before its first command (defineLeaseScripts).
   */
  static on(client: RedisClient, options: RedisLeaseStoreOptions): RedisLeaseStore {
    return new RedisLeaseStore(client as LeaseClient, options);
  }

  private constructor(client: LeaseClient, options: RedisLeaseStoreOptions) {
    this.client = client;
    this.options = options;
  }

  async heartbeat(node: NodeInfo, ttlMs: number): Promise<NodeInfo[]> {
    const reply = await this.client.heartbeatNode(keys.nodeInfo(), keys.nodeAlive(), node.nodeId, node.address, ttlMs);
    if (!Array.isArray(reply)) throw new Error(`unexpected heartbeat reply: ${JSON.stringify(reply)}`);
    const nodes: NodeInfo[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      nodes.push({ nodeId: String(reply[i]), address: String(reply[i + 1]) });
    }
    return nodes;
  }

  async leave(nodeId: string): Promise<void> {
    await this.client.zrem(keys.nodeAlive(), nodeId);
    await this.client.hdel(keys.nodeInfo(), nodeId);
  }

  async readLeases(shardCount: number): Promise<Array<LeaseHolder | undefined>> {
    const values = await Promise.all(
      Array.from({ length: shardCount }, (_, shard) => this.client.get(keys.lease(shard))),
    );
    return values.map((value) => (value === null ? undefined : parseHolder(value)));
  }

  async acquire(shard: number, nodeId: string, ttlMs: number): Promise<AcquireResult> {
    const reply = await this.client.acquireLease(keys.lease(shard), keys.token(shard), nodeId, ttlMs);
    if (!Array.isArray(reply)) throw new Error(`unexpected acquire reply: ${JSON.stringify(reply)}`);
    const [status, token, holder] = reply as unknown[];
    if (status === 1 && typeof token === "number") {
      await this.waitForReplicas(keys.token(shard));
      return { kind: "acquired", token };
    }
    if (typeof token === "number" && typeof holder === "string") return { kind: "held", nodeId: holder, token };
    throw new Error(`unexpected acquire reply: ${JSON.stringify(reply)}`);
  }

  async renew(shard: number, nodeId: string, token: number, ttlMs: number): Promise<boolean> {
    return (await this.client.renewLease(keys.lease(shard), `${token}:${nodeId}`, ttlMs)) === 1;
  }

  async release(shard: number, nodeId: string, token: number): Promise<void> {
    await this.client.releaseLease(keys.lease(shard), `${token}:${nodeId}`);
  }

  /**
   * Best effort: a token a failover forgot would only weaken fencing, never
   * break order. WAIT blocks the connection every node command shares, so it
   * is skipped while the master has no replica (just after a failover) and
   * kept short otherwise.
   */
  private async waitForReplicas(key: string): Promise<void> {
    if (this.options.waitReplicas === 0) return;
    const master = masterOf(this.client, key);
    const connection = connectionTo(this.client, master);
    const known = this.replicaCounts.get(master);
    let replicas = known?.count;
    if (known === undefined || Date.now() - known.atMs > REPLICA_COUNT_TTL_MS) {
      replicas = await attachedReplicas(connection);
      this.replicaCounts.set(master, { count: replicas, atMs: Date.now() });
    }
    const wanted = Math.min(this.options.waitReplicas, replicas ?? 0);
    if (wanted > 0) await connection.wait(wanted, Math.min(this.options.waitTimeoutMs, LEASE_WAIT_MS));
  }
}

function parseHolder(value: string): LeaseHolder {
  const colon = value.indexOf(":");
  return { token: Number(value.slice(0, colon)), nodeId: value.slice(colon + 1) };
}
