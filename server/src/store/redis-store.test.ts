import { createServer } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it } from "vitest";
import { startRedis, type RunningRedis } from "../../../scripts/harness/redis.ts";
import { newId, ChatKind, ErrorCode } from "@remessenger/protocol";
import { RedisLeaseStore } from "./redis-lease-store.ts";
import { RedisStore } from "./redis-store.ts";
import { describeStoreContract, draft, type StoreFixture } from "./store-contract.ts";
import type { Store } from "./store.ts";

let redis: RunningRedis;
let admin: Redis;
let fixtureCount = 0;

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});

afterAll(async () => {
  await admin.quit();
  await redis.stop();
});

/** A prefix of its own for each test, so tests share the server but never data. */
function nextKeyPrefix(): string {
  fixtureCount += 1;
  return `${redis.keyPrefix}${fixtureCount}:`;
}

async function deleteKeys(keyPrefix: string): Promise<void> {
  for await (const batch of admin.scanStream({ match: `${keyPrefix}*`, count: 1_000 })) {
    const keys = batch as string[];
    if (keys.length > 0) await admin.unlink(...keys);
  }
}

async function openRedisFixture(): Promise<StoreFixture> {
  const keyPrefix = nextKeyPrefix();
  const opened: Store[] = [await RedisStore.open({ url: redis.url, keyPrefix })];
  return {
    store: opened[0]!,
    reopen: async () => {
      const store = await RedisStore.open({ url: redis.url, keyPrefix });
      opened.push(store);
      return store;
    },
    cleanup: async () => {
      await Promise.all(opened.map((store) => store.close()));
      await deleteKeys(keyPrefix);
    },
  };
}

describeStoreContract("RedisStore", openRedisFixture);

describe("RedisStore", () => {
  let keyPrefix: string;
  let store: RedisStore;

  beforeEach(async () => {
    keyPrefix = nextKeyPrefix();
    store = await RedisStore.open({ url: redis.url, keyPrefix });
  });

  afterEach(async () => {
    await store.close();
    await deleteKeys(keyPrefix);
  });

  it("answers a lease heartbeat sent in the same event-loop turn as other commands right after opening", async () => {
    // The lease scripts are defined with the store's, before its first command: defined on a busy
    // client, a heartbeat meeting an auto-pipeline failed ("pipeline[functionName] is not a function").
    const leases = RedisLeaseStore.on(store.redis, { waitReplicas: 0, waitTimeoutMs: 100 });
    const node = { nodeId: `node-${keyPrefix}`, address: "127.0.0.1:1" };
    const pings = Array.from({ length: 20 }, () => store.redis.ping());
    const [alive] = await Promise.all([leases.heartbeat(node, 5_000), ...pings]);
    expect(alive).toContainEqual(node);
  });

  it("sends appends from many chats arriving together in far fewer round trips", async () => {
    const chatIds = await Promise.all(Array.from({ length: 200 }, () => createChat(store, ["u-a", "u-b"])));
    const before = store.stats.commits;
    const outcomes = await Promise.all(chatIds.map((chatId, i) => store.appendMessages(chatId, [draft(i, "d-a")])));
    expect(outcomes.every((outcome) => outcome[0]?.seq === 1)).toBe(true);
    expect(store.stats.commits - before).toBeLessThanOrEqual(10);
  });

  it("keeps every key of a chat under that chat's hash tag", async () => {
    const chatId = await createChat(store, ["u-a"], ["d-a"]);
    await store.appendMessages(chatId, [draft(1, "d-a"), draft(2, "d-a")]);
    const chatKeys = (await admin.keys(`${keyPrefix}*chat:*`)).map((key) => key.slice(keyPrefix.length));
    expect(chatKeys.sort()).toEqual(["cursors", "ids", "messages", "meta"].map((name) => `{chat:${chatId}}:${name}`));
  });

  it("lists a chat again for members a crash between its two steps left out", async () => {
    const chatId = await createChat(store, ["u-a", "u-b"]);
    await admin.del(`${keyPrefix}{user:u-b}:chats`);
    expect(await store.listUserChatIds("u-b")).toEqual([]);
    const again = await store.createChat(chatRecord(chatId, ["u-a", "u-b"]), []);
    expect(again.created).toBe(false);
    expect(await store.listUserChatIds("u-b")).toEqual([chatId]);
  });

  it("reads a device id claimed by a crashed createUser as no device and lets the retry finish", async () => {
    const userId = newId("user");
    const deviceId = newId("device");
    await admin.set(`${keyPrefix}{device:${deviceId}}:owner`, userId);
    expect(await store.getDevice(deviceId)).toBeUndefined();
    const device = { deviceId, userId, identityKey: new Uint8Array(32).fill(7), createdAtMs: 2 };
    await store.createUser({ userId, displayName: "Ada", createdAtMs: 1 }, device);
    expect(await store.getDevice(deviceId)).toEqual(device);
  });

  it("fails fast with UNAVAILABLE when Redis is unreachable", async () => {
    const port = await closedPort();
    await expect(RedisStore.open({ url: `redis://127.0.0.1:${port}` })).rejects.toMatchObject({
      code: ErrorCode.ERROR_CODE_UNAVAILABLE,
      message: expect.stringMatching(/ECONNREFUSED/) as unknown,
    });
  });

  it("refuses a key prefix that would move the hash tag", async () => {
    await expect(RedisStore.open({ url: redis.url, keyPrefix: "a{b}:" })).rejects.toThrow(/braces/);
  });
});

function chatRecord(chatId: string, memberUserIds: string[]) {
  return { chatId, kind: ChatKind.CHAT_KIND_GROUP, title: "", memberUserIds, createdByUserId: "u-a", createdAtMs: 1 };
}

async function createChat(store: Store, memberUserIds: string[], deviceIds: string[] = []): Promise<string> {
  const chatId = newId("chat");
  await store.createChat(chatRecord(chatId, memberUserIds), deviceIds);
  return chatId;
}

/** A loopback port nothing listens on: bound once by us, then released. */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        resolve(typeof address === "object" && address !== null ? address.port : 1);
      });
    });
  });
}
