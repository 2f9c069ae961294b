/**
 * Store append throughput, per adapter and batch size. Prints figures, asserts
 * nothing.
 *
 *   node bench/store-throughput.ts [--seconds 2]
 *
 * Two shapes per batch size (drafts per appendMessages call):
 *   one chat   one call in flight at a time: every call is its own commit, so
 *              this is the raw cost of a durable commit of that size;
 *   64 chats   64 chats each keep one call in flight: the group commit merges
 *              them, as on a busy server.
 * SQLite runs on a fresh file in the OS temp dir; Redis on a private
 * redis-server (scripts/harness/redis.ts) or REDIS_URL.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ChatKind } from "@remessenger/protocol";
import { RedisStore } from "../server/src/store/redis-store.ts";
import { SqliteStore } from "../server/src/store/sqlite-store.ts";
import type { MessageDraft, Store } from "../server/src/store/store.ts";
import type { GroupCommitStats } from "../server/src/store/group-commit.ts";
import { startRedis } from "../scripts/harness/redis.ts";

const BATCH_SIZES = [1, 100, 1_000] as const;
const CONCURRENT_CHATS = 64;
const PAYLOAD_BYTES = 256;

interface Row {
  adapter: string;
  shape: string;
  batch: number;
  messages: number;
  seconds: number;
  commits: number;
}

type MeasuredStore = Store & { readonly stats: GroupCommitStats };

const { values } = parseArgs({ options: { seconds: { type: "string", default: "2" } } });
const secondsPerRow = Number(values.seconds);

async function main(): Promise<void> {
  const rows: Row[] = [];

  const dataDir = await mkdtemp(join(tmpdir(), "remessenger-bench-"));
  try {
    const sqlite = await SqliteStore.open({ dataDir });
    rows.push(...(await measureAdapter("sqlite", sqlite)));
    await sqlite.close();
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }

  const redisServer = await startRedis();
  try {
    const redis = await RedisStore.open({ url: redisServer.url, keyPrefix: `${redisServer.keyPrefix}bench:` });
    rows.push(...(await measureAdapter("redis", redis)));
    await redis.close();
  } finally {
    await redisServer.stop();
  }

  printTable(rows);
}

async function measureAdapter(adapter: string, store: MeasuredStore): Promise<Row[]> {
  const rows: Row[] = [];
  for (const batch of BATCH_SIZES) {
    rows.push({ adapter, shape: "one chat", batch, ...(await measure(store, 1, batch)) });
    rows.push({
      adapter,
      shape: `${CONCURRENT_CHATS} chats`,
      batch,
      ...(await measure(store, CONCURRENT_CHATS, batch)),
    });
  }
  return rows;
}

/** Runs `chats` closed loops of appends of `batch` drafts for secondsPerRow. */
async function measure(
  store: MeasuredStore,
  chats: number,
  batch: number,
): Promise<{ messages: number; seconds: number; commits: number }> {
  const chatIds = await Promise.all(Array.from({ length: chats }, () => createChat(store)));
  const payload = new Uint8Array(randomBytes(PAYLOAD_BYTES));
  const commitsBefore = store.stats.commits;
  const started = performance.now();
  const deadline = started + secondsPerRow * 1_000;
  let messages = 0;
  await Promise.all(
    chatIds.map(async (chatId) => {
      while (performance.now() < deadline) {
        await store.appendMessages(
          chatId,
          Array.from({ length: batch }, () => newDraft(payload)),
        );
        messages += batch;
      }
    }),
  );
  return { messages, seconds: (performance.now() - started) / 1_000, commits: store.stats.commits - commitsBefore };
}

async function createChat(store: Store): Promise<string> {
  const chatId = `c-bench-${randomBytes(8).toString("hex")}`;
  await store.createChat(
    {
      chatId,
      kind: ChatKind.CHAT_KIND_GROUP,
      title: "",
      memberUserIds: ["u-a", "u-b"],
      createdByUserId: "u-a",
      createdAtMs: Date.now(),
    },
    ["d-a", "d-b"],
  );
  return chatId;
}

function newDraft(payload: Uint8Array): MessageDraft {
  return {
    messageId: new Uint8Array(randomBytes(16)),
    senderUserId: "u-a",
    senderDeviceId: "d-a",
    serverTimeMs: Date.now(),
    payload,
    devicePayloads: [],
  };
}

function printTable(rows: Row[]): void {
  console.log(`store append throughput (${PAYLOAD_BYTES}-byte payloads, ~${secondsPerRow} s per row)`);
  console.log("adapter  shape      batch   messages   msg/s    commits  msg/commit");
  for (const row of rows) {
    console.log(
      [
        row.adapter.padEnd(8),
        row.shape.padEnd(10),
        String(row.batch).padStart(5),
        String(row.messages).padStart(10),
        String(Math.round(row.messages / row.seconds)).padStart(8),
        String(row.commits).padStart(9),
        String(Math.round(row.messages / Math.max(1, row.commits))).padStart(11),
      ].join(" "),
    );
  }
}

await main();
