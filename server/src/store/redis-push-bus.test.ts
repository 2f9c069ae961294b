import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId, newMessageId } from "@remessenger/protocol";
import { type RunningRedis, startRedis } from "../../../scripts/harness/redis.ts";
import type { BusEvent } from "../core/push-bus.ts";
import { type RedisClient, connectRedis } from "./redis-connection.ts";
import { RedisPushBus } from "./redis-push-bus.ts";

let redis: RunningRedis;
const clients: RedisClient[] = [];
const buses: RedisPushBus[] = [];

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  for (const bus of buses) await bus.close();
  for (const client of clients) client.disconnect();
  await redis.stop();
});

async function node(nodeId: string, keyPrefix: string): Promise<RedisPushBus> {
  const publisher = await connectRedis({ url: redis.url }, { keyPrefix });
  clients.push(publisher);
  const bus = await RedisPushBus.open(publisher, { url: redis.url }, { nodeId, onError: () => undefined });
  buses.push(bus);
  return bus;
}

function messageEvent(chatId: string, seq: number): BusEvent {
  return {
    kind: "message",
    senderCaughtUp: false,
    message: {
      chatId,
      seq,
      messageId: newMessageId(),
      senderUserId: newId("user"),
      senderDeviceId: newId("device"),
      serverTimeMs: 1,
      payload: new Uint8Array([seq]),
      devicePayloads: [],
    },
  };
}

/** Resolves once `count` events reached `seen`. */
function waitForEvents(seen: BusEvent[], count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${seen.length} of ${count} events`)), 10_000);
    const check = (): void => {
      if (seen.length < count) return void setImmediate(check);
      clearTimeout(timer);
      resolve();
    };
    check();
  });
}

describe("RedisPushBus", () => {
  it("delivers a user's events to every node listening for the user, each once, its own copy skipped", async () => {
    const prefix = `${redis.keyPrefix}bus:`;
    // Node ids where one is a prefix of the other: the own-copy check must tell them apart.
    const a = await node("node-1", prefix);
    const b = await node("node-10", prefix);
    const user = newId("user");
    const chatId = newId("chat");
    const onA: BusEvent[] = [];
    const onB: BusEvent[] = [];
    a.subscribe(user, (event) => onA.push(event));
    b.subscribe(user, (event) => onB.push(event));
    await Promise.all([a.ready(user), b.ready(user)]);

    a.publish([user], messageEvent(chatId, 1));
    b.publish([user], messageEvent(chatId, 2));
    a.publish([user], messageEvent(chatId, 3));
    await waitForEvents(onB, 3);
    // Redis published 3 to every subscriber before it takes this one: a's copy of 3 is in before it.
    b.publish([user], messageEvent(chatId, 4));
    await Promise.all([waitForEvents(onA, 4), waitForEvents(onB, 4)]);
    const seqs = (events: BusEvent[]) => events.map((e) => (e.kind === "message" ? e.message.seq : -1));
    expect(seqs(onA).sort()).toEqual([1, 2, 3, 4]);
    expect(seqs(onB).sort()).toEqual([1, 2, 3, 4]);
    expect(a.stats.received).toBe(2);
    expect(b.stats.received).toBe(2);
  });

  it("carries a burst of events published in one turn in order", async () => {
    const prefix = `${redis.keyPrefix}burst:`;
    const a = await node("burst-a", prefix);
    const b = await node("burst-b", prefix);
    const user = newId("user");
    const chatId = newId("chat");
    const onB: BusEvent[] = [];
    b.subscribe(user, (event) => onB.push(event));
    await b.ready(user);
    for (let seq = 1; seq <= 200; seq += 1) a.publish([user], messageEvent(chatId, seq));
    await waitForEvents(onB, 200);
    expect(onB.map((e) => (e.kind === "message" ? e.message.seq : -1))).toEqual(
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
  });

  it("carries a group's event to another node once, for the users watching the group there, until the last watch ends", async () => {
    const prefix = `${redis.keyPrefix}group:`;
    const a = await node("group-a", prefix);
    const b = await node("group-b", prefix);
    const [carol, dave, erin] = [newId("user"), newId("user"), newId("user")];
    const chatId = newId("chat");
    const seen = new Map<string, BusEvent[]>([carol, dave, erin].map((user) => [user, []]));
    for (const user of [carol, dave, erin]) b.subscribe(user, (event) => seen.get(user)?.push(event));
    // Carol twice (two devices), Dave once; Erin is connected but not a member.
    const watches = [b.watchGroup(carol, chatId), b.watchGroup(carol, chatId), b.watchGroup(dave, chatId)];
    await Promise.all(watches.map((w) => w.ready));

    a.publishToGroup(chatId, [carol, dave], messageEvent(chatId, 1));
    await Promise.all([waitForEvents(seen.get(carol) ?? [], 1), waitForEvents(seen.get(dave) ?? [], 1)]);

    // One of Carol's watches and Dave's end: Carol still hears the group, Dave no more.
    watches[0]?.stop();
    watches[2]?.stop();
    a.publishToGroup(chatId, [carol, dave], messageEvent(chatId, 2));
    await waitForEvents(seen.get(carol) ?? [], 2);
    watches[1]?.stop();
    // A user's own channel still works, and tells what came before it.
    a.publish([dave], messageEvent(chatId, 3));
    await waitForEvents(seen.get(dave) ?? [], 2);
    const seqs = (user: string) => (seen.get(user) ?? []).map((e) => (e.kind === "message" ? e.message.seq : -1));
    expect(seqs(carol)).toEqual([1, 2]);
    expect(seqs(dave)).toEqual([1, 3]);
    expect(seqs(erin)).toEqual([]);
  });
});
