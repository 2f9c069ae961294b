import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { newId } from "@remessenger/protocol";
import { SHARD_COUNT, preferredOwner, preferredShards, shardOf } from "./shard-placement.ts";

const nodes = (count: number): string[] => Array.from({ length: count }, (_, i) => `node-${i}`);

describe("shard placement", () => {
  it("puts a chat in the same shard every time, within range", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 40 }), (chatId) => {
        const shard = shardOf(chatId);
        expect(shard).toBe(shardOf(chatId));
        expect(shard).toBeGreaterThanOrEqual(0);
        expect(shard).toBeLessThan(SHARD_COUNT);
      }),
    );
  });

  it("spreads chats over the shards", () => {
    const counts = new Array<number>(SHARD_COUNT).fill(0);
    for (let i = 0; i < 6_400; i += 1) counts[shardOf(newId("chat"))]! += 1;
    expect(Math.min(...counts)).toBeGreaterThan(50);
    expect(Math.max(...counts)).toBeLessThan(160);
  });

  it("gives every shard to exactly one live node, the same whatever order the list is in", () => {
    const live = nodes(3);
    for (let shard = 0; shard < SHARD_COUNT; shard += 1) {
      expect(preferredOwner(shard, live)).toBe(preferredOwner(shard, [...live].reverse()));
    }
    const all = live.flatMap((nodeId) => preferredShards(nodeId, live));
    expect(all.sort((a, b) => a - b)).toEqual(Array.from({ length: SHARD_COUNT }, (_, i) => i));
    for (const nodeId of live) expect(preferredShards(nodeId, live).length).toBeGreaterThan(10);
    expect(preferredOwner(0, [])).toBeUndefined();
  });

  it("moves only the shards of the node that joins or leaves", () => {
    const before = nodes(3);
    const after = nodes(4);
    for (let shard = 0; shard < SHARD_COUNT; shard += 1) {
      const was = preferredOwner(shard, before);
      const now = preferredOwner(shard, after);
      if (now !== "node-3") expect(now).toBe(was);
    }
    const leaving = before.filter((nodeId) => nodeId !== "node-1");
    for (let shard = 0; shard < SHARD_COUNT; shard += 1) {
      const was = preferredOwner(shard, before);
      if (was !== "node-1") expect(preferredOwner(shard, leaving)).toBe(was);
    }
  });
});
