/**
 * One way to reach Redis for every Redis adapter (the Store, the leases, the
 * push bus): a single server by URL, or a Redis Cluster by its seed nodes.
 * Both are ioredis clients with the same commands; what differs (where a
 * keyless command like WAIT goes, how a subscriber connects) is asked through
 * `isCluster`.
 */
import calculateSlot from "cluster-key-slot";
import { Cluster, Redis } from "ioredis";
import { RemessengerError, ErrorCode } from "@remessenger/protocol";

export interface RedisHostPort {
  host: string;
  port: number;
}

/** A single Redis by URL, or a Redis Cluster by seed nodes (any few of its nodes). */
export type RedisTarget = { url: string } | { clusterNodes: readonly RedisHostPort[] };

export type RedisClient = Redis | Cluster;

export interface RedisClientOptions {
  /** Prepended to every key (not to pub/sub channels). Must not contain braces. */
  keyPrefix?: string;
  /** Told about each connection error while ioredis reconnects (for the log). */
  onConnectionError?: (error: Error) => void;
  /** Runs before connecting (defineCommand must precede the first command). */
  prepare?: (client: RedisClient) => Promise<void>;
  /** For sharded pub/sub (SSUBSCRIBE): on a cluster, one subscriber connection per master. */
  isSubscriber?: boolean;
}

/**
 * No command waits longer than this: one queued for a master that died (while
 * the cluster fails over) fails instead, and the caller's retry finds the new
 * master. Longer than every WAIT timeout the adapters use.
 */
const COMMAND_TIMEOUT_MS = 5_000;
const SUBSCRIBER_SLOTS_REFRESH_MS = 2_000;

export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}

/** Connects and fails fast with UNAVAILABLE when Redis cannot be reached. */
export async function connectRedis(target: RedisTarget, options: RedisClientOptions = {}): Promise<RedisClient> {
  const keyPrefix = options.keyPrefix ?? "";
  if (/[{}]/.test(keyPrefix))
    throw new Error(`keyPrefix must not contain braces (they would move the hash tag): ${keyPrefix}`);
  const client: RedisClient =
    "url" in target
      ? new Redis(target.url, {
          keyPrefix,
          enableAutoPipelining: true,
          lazyConnect: true,
          commandTimeout: COMMAND_TIMEOUT_MS,
        })
      : new Cluster(
          target.clusterNodes.map((node) => ({ host: node.host, port: node.port })),
          {
            keyPrefix,
            enableAutoPipelining: true,
            lazyConnect: true,
            scaleReads: "master",
            // During a failover the dead master's slots answer nothing, then MOVED:
            // retry often enough to follow the promoted replica within a second.
            retryDelayOnFailover: 100,
            retryDelayOnClusterDown: 100,
            retryDelayOnTryAgain: 100,
            maxRedirections: 32,
            slotsRefreshTimeout: 2_000,
            redisOptions: { connectTimeout: 2_000, commandTimeout: COMMAND_TIMEOUT_MS },
            shardedSubscribers: options.isSubscriber === true,
            // A subscriber learns a failover only from a slot refresh (it sends
            // no commands that could be redirected): refresh it often, so its
            // channels move to the promoted replica within seconds.
            ...(options.isSubscriber === true ? { slotsRefreshInterval: SUBSCRIBER_SLOTS_REFRESH_MS } : {}),
          },
        );
  let lastConnectionError: Error | undefined;
  client.on("error", (error: Error) => {
    lastConnectionError = error;
    options.onConnectionError?.(error);
  });
  await options.prepare?.(client);
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    const cause = lastConnectionError ?? error;
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, `cannot reach Redis: ${reason}`, { cause });
  }
  return client;
}

/** The master serving `key` (unprefixed), as "host:port"; "" on one Redis. */
export function masterOf(client: RedisClient, key: string): string {
  if (!isCluster(client)) return "";
  const slot = calculateSlot(`${client.options.keyPrefix ?? ""}${key}`);
  return client.slots[slot]?.[0] ?? `slot:${slot}`;
}

/**
 * The connection that commands for `master` (from masterOf) go over. A WAIT
 * sent on it covers every write that connection carried before.
 */
export function connectionTo(client: RedisClient, master: string): Redis {
  if (!isCluster(client)) return client;
  const node = client.nodes("master").find((redis) => `${redis.options.host}:${redis.options.port}` === master);
  if (node === undefined) throw new Error(`no connection to master ${master}`);
  return node;
}

/** How many replicas are attached to the master on this connection (ROLE). */
export async function attachedReplicas(connection: Redis): Promise<number> {
  const role = (await connection.call("ROLE")) as unknown[];
  return role[0] === "master" && Array.isArray(role[2]) ? role[2].length : 0;
}
