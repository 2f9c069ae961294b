import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId, newMessageId } from "../../../client/core/src/wire/ids.ts";
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
});
