import { describe, expect, it } from "vitest";
import { type AcquireResult, type LeaseHolder, type LeaseStore, type NodeInfo, ShardLeases } from "./lease.ts";
import { preferredOwner } from "./shard-placement.ts";

const SHARDS = 16;
const TTL_MS = 3_000;

/** Leases and the node list in memory, on a clock the test moves. */
class MemoryLeaseStore implements LeaseStore {
  nowMs = 0;
  isDown = false;
  private readonly leases = new Map<number, LeaseHolder & { expiresAtMs: number }>();
  private readonly tokens = new Map<number, number>();
  private readonly nodes = new Map<string, { address: string; expiresAtMs: number }>();

  private check(): void {
    if (this.isDown) throw new Error("redis unreachable");
  }

  private lease(shard: number): (LeaseHolder & { expiresAtMs: number }) | undefined {
    const lease = this.leases.get(shard);
    if (lease !== undefined && lease.expiresAtMs <= this.nowMs) {
      this.leases.delete(shard);
      return undefined;
    }
    return lease;
  }

  heartbeat(node: NodeInfo, ttlMs: number): Promise<NodeInfo[]> {
    this.check();
    this.nodes.set(node.nodeId, { address: node.address, expiresAtMs: this.nowMs + ttlMs });
    return Promise.resolve(
      [...this.nodes]
        .filter(([, n]) => n.expiresAtMs > this.nowMs)
        .map(([nodeId, n]) => ({ nodeId, address: n.address })),
    );
  }

  leave(nodeId: string): Promise<void> {
    this.check();
    this.nodes.delete(nodeId);
    return Promise.resolve();
  }

  readLeases(shardCount: number): Promise<Array<LeaseHolder | undefined>> {
    this.check();
    return Promise.resolve(
      Array.from({ length: shardCount }, (_, shard) => {
        const lease = this.lease(shard);
        return lease === undefined ? undefined : { nodeId: lease.nodeId, token: lease.token };
      }),
    );
  }

  acquire(shard: number, nodeId: string, ttlMs: number): Promise<AcquireResult> {
    this.check();
    const held = this.lease(shard);
    if (held !== undefined && held.nodeId !== nodeId) {
      return Promise.resolve({ kind: "held", nodeId: held.nodeId, token: held.token });
    }
    const token = held?.token ?? (this.tokens.get(shard) ?? 0) + 1;
    this.tokens.set(shard, token);
    this.leases.set(shard, { nodeId, token, expiresAtMs: this.nowMs + ttlMs });
    return Promise.resolve({ kind: "acquired", token });
  }

  renew(shard: number, nodeId: string, token: number, ttlMs: number): Promise<boolean> {
    this.check();
    const held = this.lease(shard);
    if (held?.nodeId !== nodeId || held.token !== token) return Promise.resolve(false);
    held.expiresAtMs = this.nowMs + ttlMs;
    return Promise.resolve(true);
  }

  release(shard: number, nodeId: string, token: number): Promise<void> {
    this.check();
    const held = this.lease(shard);
    if (held?.nodeId === nodeId && held.token === token) this.leases.delete(shard);
    return Promise.resolve();
  }

  holderOf(shard: number): LeaseHolder | undefined {
    return this.lease(shard);
  }
}

interface TestNode {
  leases: ShardLeases;
  lost: number[];
  drained: number[];
}

function node(store: MemoryLeaseStore, nodeId: string): TestNode {
  const lost: number[] = [];
  const drained: number[] = [];
  const leases = new ShardLeases({
    self: { nodeId, address: `${nodeId}:1` },
    store,
    clock: { nowMs: () => store.nowMs },
    ttlMs: TTL_MS,
    shardCount: SHARDS,
    onAcquired: () => undefined,
    onLost: (shard) => lost.push(shard),
    drain: (shard) => {
      drained.push(shard);
      return Promise.resolve();
    },
    onError: () => undefined,
  });
  return { leases, lost, drained };
}

const owned = (n: TestNode): number[] =>
  Array.from({ length: SHARDS }, (_, shard) => shard).filter((shard) => n.leases.tokenFor(shard) !== undefined);

/** Nodes a and b on one store, ticked until the shards are split between them (a joins first). */
async function settledPair(): Promise<{ store: MemoryLeaseStore; a: TestNode; b: TestNode }> {
  const store = new MemoryLeaseStore();
  const a = node(store, "a");
  const b = node(store, "b");
  await a.leases.tickNow();
  await b.leases.tickNow(); // b announces itself
  await a.leases.tickNow(); // a hands b's shards over
  await b.leases.tickNow(); // b takes them
  return { store, a, b };
}

describe("ShardLeases", () => {
  it("takes every shard when alone, then hands a joining node its preferred ones", async () => {
    const store = new MemoryLeaseStore();
    const a = node(store, "a");
    await a.leases.tickNow();
    expect(owned(a)).toHaveLength(SHARDS);

    const b = node(store, "b");
    await b.leases.tickNow(); // b announces itself; a still holds everything
    expect(owned(b)).toEqual([]);
    await a.leases.tickNow(); // a sees b and hands over b's shards (drained, released)
    const bShards = Array.from({ length: SHARDS }, (_, s) => s).filter((s) => preferredOwner(s, ["a", "b"]) === "b");
    expect(a.drained.sort((x, y) => x - y)).toEqual(bShards);
    await b.leases.tickNow(); // b takes them
    expect(owned(b)).toEqual(bShards);
    expect(owned(a).length + owned(b).length).toBe(SHARDS);
  });

  it("refuses a send forwarded by a stale view for a shard it handed over, rather than taking it back", async () => {
    const store = new MemoryLeaseStore();
    const a = node(store, "a");
    await a.leases.tickNow();
    const b = node(store, "b");
    await b.leases.tickNow();
    await a.leases.tickNow(); // a hands b's shards over: released, not yet taken
    const [handed] = Array.from({ length: SHARDS }, (_, s) => s).filter((s) => preferredOwner(s, ["a", "b"]) === "b");
    if (handed === undefined) throw new Error("b should be preferred for some shard");
    expect(store.holderOf(handed)).toBeUndefined();

    // Another node still believes a holds it and forwards a send there.
    expect(await a.leases.resolve(handed, true)).toEqual({ kind: "unavailable", reason: "belongs to b" });
    expect(store.holderOf(handed)).toBeUndefined();
    // The preferred node takes it when the send reaches it, forwarded or not.
    expect((await b.leases.resolve(handed, true)).kind).toBe("local");
    expect(store.holderOf(handed)?.nodeId).toBe("b");
  });

  it("lets the survivors take a silent node's shards once its lease expired, with a higher token", async () => {
    const { store, a, b } = await settledPair();
    const bShards = owned(b);
    const oldTokens = bShards.map((s) => b.leases.tokenFor(s) ?? 0);
    // b stops renewing: a keeps ticking, the clock passes b's lease.
    store.nowMs += TTL_MS / 2;
    await a.leases.tickNow();
    expect(owned(a).some((s) => bShards.includes(s))).toBe(false);
    store.nowMs += TTL_MS;
    await a.leases.tickNow();
    expect(owned(a)).toHaveLength(SHARDS);
    bShards.forEach((shard, i) => expect(a.leases.tokenFor(shard)).toBeGreaterThan(oldTokens[i] ?? 0));
    // b wakes up: its renewals fail and it lets go.
    await b.leases.tickNow();
    expect(owned(b)).toEqual([]);
    expect(b.lost.sort((x, y) => x - y)).toEqual(bShards);
  });

  it("keeps its shards through a Redis outage shorter than the lease, and drops them after", async () => {
    const store = new MemoryLeaseStore();
    const a = node(store, "a");
    await a.leases.tickNow();
    store.isDown = true;
    store.nowMs += TTL_MS / 3;
    await a.leases.tickNow();
    expect(owned(a)).toHaveLength(SHARDS);
    store.nowMs += TTL_MS;
    await a.leases.tickNow();
    expect(owned(a)).toEqual([]);
    store.isDown = false;
    await a.leases.tickNow();
    expect(owned(a)).toHaveLength(SHARDS);
  });

  it("routes a shard here, to its holder, or to the preferred node, and forgets a shard the store fenced", async () => {
    const { a, b } = await settledPair();
    const [mine] = owned(a);
    const [theirs] = owned(b);
    if (mine === undefined || theirs === undefined) throw new Error("each node should own shards");
    // Before a reads the leases again it does not know b took its shards: no route yet, but the preferred node.
    expect(a.leases.route(theirs)).toBeUndefined();
    expect(await a.leases.resolve(theirs)).toEqual({ kind: "remote", node: { nodeId: "b", address: "b:1" } });
    await a.leases.tickNow();
    expect(a.leases.route(mine)).toEqual({ kind: "local", token: a.leases.tokenFor(mine) });
    expect(a.leases.route(theirs)).toEqual({ kind: "remote", node: { nodeId: "b", address: "b:1" } });
    a.leases.markLost(mine);
    expect(a.leases.tokenFor(mine)).toBeUndefined();
    expect(a.lost).toContain(mine);
    // The lease is still a's in the store: resolving finds it a's again (preferred, held by a).
    expect((await a.leases.resolve(mine)).kind).toBe("local");
  });

  it("hands every shard over and leaves the node list when stopped", async () => {
    const { store, a, b } = await settledPair();
    const aShards = owned(a);
    await a.leases.stop();
    expect(a.drained.length).toBeGreaterThanOrEqual(aShards.length);
    for (const shard of aShards) expect(store.holderOf(shard)).toBeUndefined();
    await b.leases.tickNow();
    expect(owned(b)).toHaveLength(SHARDS);
  });
});
