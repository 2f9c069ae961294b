/**
 * RedisStore on a real Redis Cluster (3 masters + 3 replicas from
 * scripts/harness/redis-cluster.ts): the shared Store contract, then what only
 * a cluster shows: fencing by lease token, acks only after a replica has the
 * append (WAIT), and no acked append lost when its master is killed.
 */
import { Cluster, Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { newId, ChatKind } from "@remessenger/protocol";
import { type RunningRedisCluster, startRedisCluster } from "../../../scripts/harness/redis-cluster.ts";
import { RedisStore } from "./redis-store.ts";
import { describeStoreContract, draft, type StoreFixture } from "./store-contract.ts";
import { FencedError, type Store } from "./store.ts";

let cluster: RunningRedisCluster;
let admin: Cluster;
let fixtureCount = 0;
const replicas: Redis[] = [];
const runId = `test:${process.pid}:${Date.now()}`;

beforeAll(async () => {
  cluster = await startRedisCluster();
  admin = new Cluster(clusterNodes(), { scaleReads: "master" });
});

afterAll(async () => {
  for (const replica of replicas) replica.disconnect();
  await admin.quit();
  await cluster.stop();
});

function clusterNodes(): Array<{ host: string; port: number }> {
  return cluster.nodes.map((node) => ({ host: "127.0.0.1", port: node.port }));
}

function nextKeyPrefix(): string {
  fixtureCount += 1;
  return `${runId}:${fixtureCount}:`;
}

async function deleteKeys(keyPrefix: string): Promise<void> {
  for (const master of admin.nodes("master")) {
    for await (const batch of master.scanStream({ match: `${keyPrefix}*`, count: 1_000 })) {
      // One UNLINK per key: a multi-key UNLINK must stay within one slot.
      for (const key of batch as string[]) await master.unlink(key);
    }
  }
}

function openStore(keyPrefix: string): Promise<RedisStore> {
  return RedisStore.open({ clusterNodes: clusterNodes(), keyPrefix, waitReplicas: 1 });
}

async function openClusterFixture(): Promise<StoreFixture> {
  const keyPrefix = nextKeyPrefix();
  const opened: Store[] = [await openStore(keyPrefix)];
  return {
    store: opened[0]!,
    reopen: async () => {
      const store = await openStore(keyPrefix);
      opened.push(store);
      return store;
    },
    cleanup: async () => {
      await Promise.all(opened.map((store) => store.close()));
      await deleteKeys(keyPrefix);
    },
  };
}

describeStoreContract("RedisStore on a Redis Cluster (WAIT 1)", openClusterFixture);

describe("RedisStore on a Redis Cluster", () => {
  let keyPrefix: string;
  let store: RedisStore;

  beforeEach(async () => {
    keyPrefix = nextKeyPrefix();
    store = await openStore(keyPrefix);
  });

  afterEach(async () => {
    await store.close();
    await deleteKeys(keyPrefix);
  });

  it("spreads chats over all three masters", async () => {
    const chatIds = await Promise.all(Array.from({ length: 30 }, () => createChat(store)));
    const masters = new Set(
      await Promise.all(
        chatIds.map(async (chatId) => (await cluster.masterOf(`${keyPrefix}{chat:${chatId}}:meta`)).port),
      ),
    );
    expect(masters.size).toBe(3);
  });

  it("refuses an append whose lease token is below the chat's, and writes nothing", async () => {
    const chatId = await createChat(store);
    expect(await store.appendMessages(chatId, [draft(1, "d-a")], { fenceToken: 7 })).toMatchObject([{ seq: 1 }]);
    const late = store.appendMessages(chatId, [draft(2, "d-a")], { fenceToken: 6 });
    await expect(late).rejects.toBeInstanceOf(FencedError);
    await expect(late).rejects.toMatchObject({ storedToken: 7 });
    expect((await store.getChat(chatId))?.headSeq).toBe(1);
    // The same and a newer token still write; the newer one fences out 7.
    expect(await store.appendMessages(chatId, [draft(3, "d-a")], { fenceToken: 7 })).toMatchObject([{ seq: 2 }]);
    expect(await store.appendMessages(chatId, [draft(4, "d-a")], { fenceToken: 9 })).toMatchObject([{ seq: 3 }]);
    await expect(store.appendMessages(chatId, [draft(5, "d-a")], { fenceToken: 7 })).rejects.toBeInstanceOf(
      FencedError,
    );
  });

  it("answers an append only once a replica holds it", async () => {
    const chatId = await createChat(store);
    const metaKey = `${keyPrefix}{chat:${chatId}}:meta`;
    const master = await cluster.masterOf(metaKey);
    const replica = await replicaOf(master.port);
    await replica.call("READONLY");
    for (let round = 1; round <= 20; round += 1) {
      await store.appendMessages(chatId, [draft(round, "d-a")]);
      // Read straight from the replica, right after the answer: it must have it.
      expect(Number(await replica.hget(metaKey, "head"))).toBe(round);
    }
  });

  it("loses no acknowledged append when the chat's master is killed mid-stream", async () => {
    const chatId = await createChat(store);
    const metaKey = `${keyPrefix}{chat:${chatId}}:meta`;
    const master = await cluster.masterOf(metaKey);
    const acked = new Map<number, number>();
    let n = 0;
    let isKilled = false;
    const killing = (async () => {
      // Kill once some appends are acknowledged.
      while (acked.size < 50) await new Promise((resolve) => setImmediate(resolve));
      await cluster.kill(master);
      isKilled = true;
    })();
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && (!isKilled || acked.size < 150)) {
      n += 1;
      const id = n;
      try {
        const [outcome] = await store.appendMessages(chatId, [draft(id, "d-a")]);
        if (outcome !== undefined) acked.set(id, outcome.seq);
      } catch {
        n -= 1; // not acknowledged: the client retries the same id
      }
    }
    await killing;
    expect(isKilled).toBe(true);
    await cluster.waitForFailover(metaKey, master);
    // Every acknowledged append is there, at the seq it was given.
    const messages = await store.readMessages(chatId, 0, 10_000);
    const bySeq = new Map(messages.map((message) => [message.seq, message.messageId]));
    for (const [id, seq] of acked) expect(bySeq.get(seq)).toEqual(draft(id, "d-a").messageId);
    expect(messages.map((message) => message.seq)).toEqual(messages.map((_, i) => i + 1));
  });
});

/** A direct connection to the replica of the master on `masterPort`. */
async function replicaOf(masterPort: number): Promise<Redis> {
  for (const node of cluster.nodes) {
    const redis = new Redis({ host: "127.0.0.1", port: node.port });
    if ((await redis.info("replication")).includes(`master_port:${masterPort}`)) {
      replicas.push(redis);
      return redis;
    }
    redis.disconnect();
  }
  throw new Error(`no replica of ${masterPort}`);
}

async function createChat(store: Store): Promise<string> {
  const chatId = newId("chat");
  await store.createChat(
    {
      chatId,
      kind: ChatKind.CHAT_KIND_GROUP,
      title: "",
      memberUserIds: ["u-a", "u-b"],
      createdByUserId: "u-a",
      createdAtMs: 1,
    },
    ["d-a", "d-b"],
  );
  return chatId;
}
