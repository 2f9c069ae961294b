/**
 * Many nodes when things die: three server nodes on a real Redis Cluster,
 * clients that fail over between the nodes by themselves (failover-client.ts).
 *
 * - kill -9 of the node that owns a busy chat: its shards move to the
 *   survivors, the clients reconnect elsewhere, 0 acked messages lost,
 *   0 duplicated, order kept;
 * - SIGSTOP of a shard owner past its lease: another node takes over and
 *   writes; after SIGCONT the old owner's late appends are refused by the
 *   fencing check, and the sequence neither forks nor repeats;
 * - kill -9 of the Redis master holding a busy chat: a replica takes over,
 *   0 acked messages lost.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitUntil } from "../../scripts/harness/wait.ts";
import { directChatId, messageIdToHex } from "@remessenger/protocol";
import { type ClusterUnderTest, KEY_PREFIX, startCluster, storedHistory } from "./cluster-fixture.ts";
import { FailoverClient } from "./failover-client.ts";

const LEASE_TTL_MS = 2_000;
let cluster: ClusterUnderTest;
const clients: FailoverClient[] = [];

beforeAll(async () => {
  cluster = await startCluster({ leaseTtlMs: LEASE_TTL_MS });
});

afterAll(async () => {
  for (const client of clients) client.close();
  await cluster.stop();
});

function urls(): string[] {
  return cluster.nodes.map((node) => node.url);
}

/** Two registered clients and their direct chat, the first on `firstNode`, the second on `secondNode`. */
async function pair(names: [string, string]): Promise<{ a: FailoverClient; b: FailoverClient; chatId: string }> {
  const a = await FailoverClient.register(urls(), names[0]);
  const b = await FailoverClient.register(urls(), names[1]);
  clients.push(a, b);
  const chatId = directChatId(a.identity?.userId ?? "", b.identity?.userId ?? "");
  return { a, b, chatId };
}

async function owner(chatId: string): Promise<{ nodeIndex: number; nodeId: string; token: number }> {
  const found = await cluster.ownerOf(chatId);
  if (found === undefined) throw new Error(`no owner for ${chatId}`);
  return found;
}

/** Sends `count` messages one after another (each retried until answered). */
async function stream(client: FailoverClient, chatId: string, count: number, label: string): Promise<void> {
  for (let i = 1; i <= count; i += 1) await client.send(chatId, `${label}-${i}`);
}

/**
 * The end state every failure must leave: the stored history is gapless with
 * each message id at one seq; every answered send is stored at the seq it was
 * answered with; both clients hold the whole chat in that order, each message once.
 */
async function expectNothingLostOrRepeated(chatId: string, total: number, ...parties: FailoverClient[]): Promise<void> {
  const stored = await storedHistory(cluster.admin, chatId);
  expect(stored.size).toBe(total);
  for (const party of parties) {
    for (const [id, seq] of party.acked) expect(stored.get(id), `acked ${id}`).toBe(seq);
    await party.waitForSeq(chatId, total);
    const held = party.accepted.get(chatId) ?? [];
    expect(held.map((m) => m.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    for (const message of held) expect(stored.get(messageIdToHex(message.messageId))).toBe(message.seq);
    expect(party.held.get(chatId)?.size ?? 0).toBe(0);
  }
}

async function fencedAppends(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("remessenger_fenced_appends"));
  return Number(line?.split(" ").at(-1) ?? "0");
}

describe("three nodes on a Redis Cluster, when things die", () => {
  it("hands a stopping node's shards over on SIGTERM, mid-stream, and loses nothing", async () => {
    const { a, b, chatId } = await pair(["gina", "hal"]);
    const before = await owner(chatId);
    const stopping = cluster.nodes[before.nodeIndex];
    if (stopping === undefined) throw new Error("no owner node");
    a.current = before.nodeIndex;
    b.current = (before.nodeIndex + 2) % 3;
    await a.createDirectChat(b.identity?.userId ?? "");
    await b.connection();

    // The operations endpoints of the owner, before it goes.
    expect((await fetch(`${stopping.url}/readyz`)).status).toBe(200);
    expect((await fetch(`${stopping.url}/healthz`)).status).toBe(200);
    const metrics = await (await fetch(`${stopping.url}/metrics`)).text();
    const sample = (series: string) => new RegExp(`^${series}\\{[^}]*node="${before.nodeId}"[^}]*\\} (\\d+)`, "m");
    expect(Number(sample("remessenger_shards_owned").exec(metrics)?.[1])).toBeGreaterThan(0);
    expect(Number(sample("remessenger_connections").exec(metrics)?.[1])).toBeGreaterThan(0);
    for (const series of ["remessenger_chat_actors", "remessenger_mailbox_depth", "remessenger_fenced_appends"]) {
      expect(metrics).toMatch(sample(series));
    }

    let exitCode: number | null | undefined;
    const stopped = (async () => {
      await waitUntil(() => a.acked.size >= 60, 20_000, "60 of gina's sends answered");
      exitCode = await stopping.stop();
    })();
    await Promise.all([stream(a, chatId, 150, "g"), stream(b, chatId, 50, "h"), stopped]);
    expect(exitCode).toBe(0);
    // Released, not expired: no shard is held by the stopped node.
    expect((await cluster.shardCounts()).has(before.nodeId)).toBe(false);
    expect(stopping.logs.some((line) => line.includes('"msg":"stopped"') && line.includes(before.nodeId))).toBe(true);
    expect(a.reconnects).toBeGreaterThanOrEqual(1);
    await expectNothingLostOrRepeated(chatId, 200, a, b);

    await stopping.restart();
    await cluster.settled();
  });

  it("moves a killed owner's shards to the survivors; its clients reconnect elsewhere and lose nothing", async () => {
    const { a, b, chatId } = await pair(["alice", "bob"]);
    const before = await owner(chatId);
    // Alice talks to the owner itself; Bob to another node.
    a.current = before.nodeIndex;
    b.current = (before.nodeIndex + 1) % 3;
    await a.createDirectChat(b.identity?.userId ?? "");
    await b.connection();

    const killed = (async () => {
      await waitUntil(() => a.acked.size >= 60, 20_000, "60 of alice's sends answered");
      await cluster.nodes[before.nodeIndex]?.kill();
    })();
    await Promise.all([stream(a, chatId, 200, "a"), stream(b, chatId, 100, "b"), killed]);

    const after = await owner(chatId);
    expect(after.nodeIndex).not.toBe(before.nodeIndex);
    expect(after.token).toBeGreaterThan(before.token);
    expect(a.reconnects).toBeGreaterThanOrEqual(1);
    await expectNothingLostOrRepeated(chatId, 300, a, b);

    // The node comes back, and the three share the shards again.
    await cluster.nodes[before.nodeIndex]?.restart();
    await cluster.settled();
  });

  it("refuses a paused owner's late appends by the fencing token once another node took over and wrote", async () => {
    const { a, b, chatId } = await pair(["carol", "dave"]);
    await cluster.settled();
    const before = await owner(chatId);
    const paused = cluster.nodes[before.nodeIndex];
    if (paused === undefined) throw new Error("no owner node");
    a.current = before.nodeIndex;
    b.current = (before.nodeIndex + 1) % 3;
    await a.createDirectChat(b.identity?.userId ?? "");
    await b.connection();
    await stream(a, chatId, 5, "warm");
    const fencedBefore = await fencedAppends(paused.url);

    // Carol's sends wait in the frozen owner's socket buffer.
    const driver = await a.connection();
    paused.pause();
    const late = Array.from({ length: 20 }, (_, i) => a.send(chatId, `late-${i}`));
    await waitUntil(
      async () => {
        const now = await cluster.ownerOf(chatId);
        return now !== undefined && now.nodeIndex !== before.nodeIndex;
      },
      15_000,
      "another node to take the shard over",
    );
    const takenBy = await owner(chatId);
    expect(takenBy.token).toBeGreaterThan(before.token);
    // The new owner writes: the chat's stored token rises past the paused one's.
    await stream(b, chatId, 10, "new-owner");
    paused.resume();

    await Promise.all(late);
    expect(driver).toBeDefined();
    expect(await fencedAppends(paused.url)).toBeGreaterThan(fencedBefore);
    await expectNothingLostOrRepeated(chatId, 35, a, b);
  });

  it("loses no acked message when the Redis master holding a busy chat is killed", async () => {
    const { a, b, chatId } = await pair(["erin", "frank"]);
    a.current = 0;
    b.current = 1;
    await a.createDirectChat(b.identity?.userId ?? "");
    await b.connection();
    const master = await cluster.redis.masterOf(`${KEY_PREFIX}{chat:${chatId}}:meta`);

    const killed = (async () => {
      await waitUntil(() => a.acked.size >= 50, 20_000, "50 of erin's sends answered");
      await cluster.redis.kill(master);
    })();
    await Promise.all([stream(a, chatId, 200, "e"), stream(b, chatId, 100, "f"), killed]);
    const promoted = await cluster.redis.waitForFailover(`${KEY_PREFIX}{chat:${chatId}}:meta`, master);
    expect(promoted.port).not.toBe(master.port);
    await expectNothingLostOrRepeated(chatId, 300, a, b);
  });
});
