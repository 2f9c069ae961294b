/**
 * Where a chat's actor lives when many nodes share one store: pure functions.
 *
 * - A chat belongs to one of SHARD_COUNT shards forever (a hash of its id), so
 *   a shard's lease token orders every writer the chat ever had.
 * - Each shard has a preferred node among the live ones, by rendezvous
 *   (highest random weight) hashing: every node computes the same answer from
 *   the same list, and when a node joins or leaves only the shards it wins or
 *   held move.
 */

/** Fixed for the life of a deployment: every node must use the same number. */
export const SHARD_COUNT = 64;

/** FNV-1a, 32 bits: fast, stable across nodes and versions, good enough spread for ids. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** A 32-bit avalanche on top of FNV, so similar inputs (node ids "a1", "a2") weigh unrelated. */
function mix(hash: number): number {
  let h = hash;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function shardOf(chatId: string, shardCount = SHARD_COUNT): number {
  return mix(fnv1a(chatId)) % shardCount;
}

/** The live node that should own `shard`, or undefined when no node is live. */
export function preferredOwner(shard: number, liveNodeIds: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1;
  for (const nodeId of liveNodeIds) {
    const weight = mix(fnv1a(`${nodeId}#${shard}`));
    // Ties (practically never) go to the smaller id, so every node agrees.
    if (weight > bestWeight || (weight === bestWeight && best !== undefined && nodeId < best)) {
      best = nodeId;
      bestWeight = weight;
    }
  }
  return best;
}

/** The shards `nodeId` should own given the live nodes. */
export function preferredShards(nodeId: string, liveNodeIds: readonly string[], shardCount = SHARD_COUNT): number[] {
  const shards: number[] = [];
  for (let shard = 0; shard < shardCount; shard += 1) {
    if (preferredOwner(shard, liveNodeIds) === nodeId) shards.push(shard);
  }
  return shards;
}
