/**
 * Three server nodes on one real Redis Cluster (3 masters + 3 replicas), for
 * the many-node suites: who owns a chat's shard, how to read a chat straight
 * from the cluster, and a frame client that checks per-chat order.
 */
import { Cluster } from "ioredis";
import { waitUntil } from "../../scripts/harness/wait.ts";
import { type RunningRedisCluster, startRedisCluster } from "../../scripts/harness/redis-cluster.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { SHARD_COUNT, shardOf } from "../src/core/shard-placement.ts";
import { RedisStore } from "../src/store/redis-store.ts";

export const KEY_PREFIX = "remessenger:";

export interface ClusterUnderTest {
  redis: RunningRedisCluster;
  nodes: TestServer[];
  /** The node ids, in `nodes` order. */
  nodeIds: string[];
  /** Reads leases and chats straight from Redis (no server in between). */
  admin: Cluster;
  store: RedisStore;
  /** The node holding the lease of the chat's shard now, with its token. */
  ownerOf(chatId: string): Promise<{ nodeIndex: number; nodeId: string; token: number } | undefined>;
  /** How many shards each node holds. */
  shardCounts(): Promise<Map<string, number>>;
  /**
   * Waits until every shard is held and `nodeCount` nodes hold them: the
   * placement settled (a shard handed over is free until its new owner's next tick).
   */
  settled(nodeCount?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  nodeCount?: number;
  leaseTtlMs?: number;
  extraArgs?: string[];
}

export async function startCluster(options: ClusterOptions = {}): Promise<ClusterUnderTest> {
  const redis = await startRedisCluster();
  const nodes: TestServer[] = [];
  const nodeIds = Array.from({ length: options.nodeCount ?? 3 }, (_, i) => `node-${i}`);
  try {
    for (const nodeId of nodeIds) {
      nodes.push(
        await startServer({
          redisCluster: redis.seeds,
          extraArgs: [
            "--node-id",
            nodeId,
            "--lease-ttl-ms",
            String(options.leaseTtlMs ?? 2_000),
            ...(options.extraArgs ?? []),
          ],
        }),
      );
    }
  } catch (error) {
    await Promise.all(nodes.map((node) => node.cleanup()));
    await redis.stop();
    throw error;
  }
  const seedNodes = redis.nodes.map((node) => ({ host: "127.0.0.1", port: node.port }));
  const admin = new Cluster(seedNodes, { keyPrefix: KEY_PREFIX, scaleReads: "master" });
  const store = await RedisStore.open({ clusterNodes: seedNodes, keyPrefix: KEY_PREFIX });
  const shardCounts = async (): Promise<Map<string, number>> => {
    const counts = new Map<string, number>();
    for (let shard = 0; shard < SHARD_COUNT; shard += 1) {
      const lease = await readLease(shard);
      if (lease !== undefined) counts.set(lease.nodeId, (counts.get(lease.nodeId) ?? 0) + 1);
    }
    return counts;
  };
  const readLease = async (shard: number) => {
    const value = await admin.get(`{leases}:lease:${shard}`);
    if (value === null) return undefined;
    const colon = value.indexOf(":");
    return { token: Number(value.slice(0, colon)), nodeId: value.slice(colon + 1) };
  };
  const cluster: ClusterUnderTest = {
    redis,
    nodes,
    nodeIds,
    admin,
    store,
    ownerOf: async (chatId) => {
      const lease = await readLease(shardOf(chatId));
      if (lease === undefined) return undefined;
      return { ...lease, nodeIndex: nodeIds.indexOf(lease.nodeId) };
    },
    shardCounts,
    settled: async (nodeCount = nodeIds.length) => {
      await waitUntil(
        async () => {
          const counts = await shardCounts();
          return counts.size === nodeCount && [...counts.values()].reduce((a, b) => a + b, 0) === SHARD_COUNT;
        },
        20_000,
        `every shard held, by ${nodeCount} nodes`,
      );
    },
    stop: async () => {
      await Promise.all(nodes.map((node) => node.cleanup()));
      await store.close();
      await admin.quit();
      await redis.stop();
    },
  };
  // Suites start from a settled placement: every shard held, spread over all the nodes.
  try {
    await cluster.settled();
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

/**
 * One chat's history as stored: message id (hex) → seq, from the id index
 * (never trimmed, unlike the bodies). Throws unless the seqs are exactly
 * 1..head, each given to one message id.
 */
export async function storedHistory(admin: Cluster, chatId: string): Promise<Map<string, number>> {
  // Flat [id, "seq:sender", ...] as raw bytes: the ids are 16 binary bytes.
  const flat = (await admin.callBuffer("HGETALL", `{chat:${chatId}}:ids`)) as Buffer[];
  const head = Number(await admin.hget(`{chat:${chatId}}:meta`, "head"));
  const ids = new Map<string, number>();
  const seqs = new Set<number>();
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const seq = Number((flat[i + 1] ?? Buffer.alloc(0)).toString("utf8").split(":")[0]);
    if (seqs.has(seq)) throw new Error(`seq ${seq} of ${chatId} given to two message ids`);
    seqs.add(seq);
    ids.set((flat[i] ?? Buffer.alloc(0)).toString("hex"), seq);
  }
  for (let seq = 1; seq <= head; seq += 1) if (!seqs.has(seq)) throw new Error(`chat ${chatId} lacks seq ${seq}`);
  if (seqs.size !== head) throw new Error(`chat ${chatId}: ${seqs.size} ids for head ${head}`);
  return ids;
}
