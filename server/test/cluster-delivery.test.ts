/**
 * Many nodes, steady state: three server nodes on a real Redis Cluster
 * (3 masters + 3 replicas). Clients on different nodes talk in one busy chat
 * and in 50 chats at once; every device sees each chat in one gapless order,
 * each message once, whichever node owns the chat.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FrameDriver, type Identity } from "../../scripts/harness/frame-driver.ts";
import { messageIdToHex, newMessageId } from "@remessenger/protocol";
import { type ClusterUnderTest, startCluster, storedHistory } from "./cluster-fixture.ts";

let cluster: ClusterUnderTest;
const drivers: FrameDriver[] = [];

beforeAll(async () => {
  cluster = await startCluster();
});

afterAll(async () => {
  for (const driver of drivers) driver.close();
  await cluster.stop();
});

interface Client {
  driver: FrameDriver;
  identity: Identity;
  /** seq → message id (hex) of what this client sent, as the server answered. */
  sent: Map<number, string>;
}

async function client(nodeIndex: number, name: string): Promise<Client> {
  const node = cluster.nodes[nodeIndex];
  if (node === undefined) throw new Error(`no node ${nodeIndex}`);
  const driver = await FrameDriver.connect(node.url);
  drivers.push(driver);
  const identity = await driver.register(name);
  return { driver, identity, sent: new Map() };
}

/** Sends `count` messages, up to `inFlight` at once, recording each answer. */
async function sendMany(from: Client, chatId: string, count: number, inFlight = 50): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next += 1;
      const messageId = newMessageId();
      const answer = await from.driver.send(chatId, `m${next}`, messageId);
      from.sent.set(answer.seq, messageIdToHex(messageId));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, () => worker()));
}

/** Seqs the client holds for the chat: pushed to it, or answered to its own sends. */
function heldSeqs(receiver: Client, chatId: string): Set<number> {
  const pushed = receiver.driver.messages().filter((m) => m.chatId === chatId);
  return new Set([...pushed.map((m) => m.seq), ...receiver.sent.keys()]);
}

/** Acks what the client holds of the chat without a gap, as a client that stores as it goes. */
function ackHeld(client: Client, chatId: string): void {
  const held = heldSeqs(client, chatId);
  let through = 0;
  while (held.has(through + 1)) through += 1;
  if (through > 0) client.driver.ack(chatId, through);
}

/**
 * What one device saw of one chat: pushed seqs strictly increasing (one order,
 * each once); pushed and own seqs together exactly 1..total; each pushed
 * message is the one its sender was answered that seq for. (A device's own
 * message comes back as a push unless it had acked everything before it.)
 */
function expectOneGaplessOrder(receiver: Client, sender: Client, chatId: string, total: number): void {
  const pushed = receiver.driver.messages().filter((m) => m.chatId === chatId);
  const seqs = pushed.map((m) => m.seq);
  for (let i = 1; i < seqs.length; i += 1) expect(seqs[i]).toBeGreaterThan(seqs[i - 1] ?? 0);
  expect([...heldSeqs(receiver, chatId)].sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
  for (const message of pushed) {
    const id = messageIdToHex(message.messageId);
    expect(id).toBe(sender.sent.get(message.seq) ?? receiver.sent.get(message.seq));
  }
}

describe("three nodes on a Redis Cluster", () => {
  it("spreads the shards over all three nodes", async () => {
    // Nodes joined one after another: the first held every shard, and hands
    // the later ones theirs within a lease tick or two.
    await cluster.settled();
    const counts = await cluster.shardCounts();
    expect([...counts.keys()].sort()).toEqual(cluster.nodeIds);
    expect([...counts.values()].reduce((a, b) => a + b, 0)).toBe(64);
  });

  it("lets two clients on different nodes exchange 1,000 messages in one chat, one gapless order each", async () => {
    const alice = await client(0, "alice");
    const bob = await client(1, "bob");
    const chatId = await alice.driver.createDirectChat(bob.identity.userId);
    await Promise.all([alice.driver.subscribe(), bob.driver.subscribe()]);
    await Promise.all([sendMany(alice, chatId, 500), sendMany(bob, chatId, 500)]);

    await alice.driver.waitFor(() => heldSeqs(alice, chatId).size >= 1_000, "alice's pushes", 30_000);
    await bob.driver.waitFor(() => heldSeqs(bob, chatId).size >= 1_000, "bob's pushes", 30_000);
    expectOneGaplessOrder(alice, bob, chatId, 1_000);
    expectOneGaplessOrder(bob, alice, chatId, 1_000);
    const stored = await storedHistory(cluster.admin, chatId);
    expect(stored.size).toBe(1_000);
  });

  it("gives a node that joins mid-stream its shards while every send is answered, in one gapless order", async () => {
    const joining = cluster.nodes[2];
    if (joining === undefined) throw new Error("no third node");
    expect(await joining.stop()).toBe(0); // its shards go to the other two
    await cluster.settled(2);
    // Clients on the two remaining nodes; a third of the chats will belong to the joining node.
    const pairs = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const a = await client(i % 2, `join-a${i}`);
        const b = await client((i + 1) % 2, `join-b${i}`);
        const chatId = await a.driver.createDirectChat(b.identity.userId);
        await Promise.all([a.driver.subscribe(), b.driver.subscribe()]);
        return { a, b, chatId };
      }),
    );
    let hasJoined = false;
    const sendersStarted = Promise.withResolvers<void>();
    const join = (async () => {
      await sendersStarted.promise;
      await joining.restart();
      await cluster.settled(3);
      hasJoined = true;
    })();
    // Any refused send fails the test (sendMany throws): nobody retries here.
    await Promise.all([
      join,
      ...pairs.map(async ({ a, b, chatId }) => {
        await Promise.all([sendMany(a, chatId, 5, 5), sendMany(b, chatId, 5, 5)]);
        sendersStarted.resolve();
        for (let round = 0; round < 200 && !hasJoined; round += 1) {
          await sendMany(a, chatId, 5, 5);
          // Past a window of unacked pushes (1,024) a device gets no more until it acks.
          ackHeld(a, chatId);
          ackHeld(b, chatId);
        }
        await Promise.all([sendMany(a, chatId, 10, 5), sendMany(b, chatId, 10, 5)]);
      }),
    ]);
    const joiningId = cluster.nodeIds[2] ?? "";
    const owners = await Promise.all(pairs.map(async (p) => (await cluster.ownerOf(p.chatId))?.nodeId));
    expect(owners).toContain(joiningId);
    for (const { a, b, chatId } of pairs) {
      const total = a.sent.size + b.sent.size;
      await a.driver.waitFor(() => heldSeqs(a, chatId).size >= total, `pushes in ${chatId}`, 30_000);
      await b.driver.waitFor(() => heldSeqs(b, chatId).size >= total, `pushes in ${chatId}`, 30_000);
      expectOneGaplessOrder(a, b, chatId, total);
      expectOneGaplessOrder(b, a, chatId, total);
      expect((await storedHistory(cluster.admin, chatId)).size).toBe(total);
    }
  });

  it("carries 50 chats at once between clients spread over the nodes, each in one gapless order", async () => {
    const pairs = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const a = await client(i % 3, `a${i}`);
        const b = await client((i + 1) % 3, `b${i}`);
        const chatId = await a.driver.createDirectChat(b.identity.userId);
        await Promise.all([a.driver.subscribe(), b.driver.subscribe()]);
        return { a, b, chatId };
      }),
    );
    const owners = new Set(await Promise.all(pairs.map(async (p) => (await cluster.ownerOf(p.chatId))?.nodeId)));
    expect(owners.size).toBe(3);
    await Promise.all(pairs.flatMap(({ a, b, chatId }) => [sendMany(a, chatId, 10, 5), sendMany(b, chatId, 10, 5)]));
    for (const { a, b, chatId } of pairs) {
      await a.driver.waitFor(() => heldSeqs(a, chatId).size >= 20, `pushes in ${chatId}`, 30_000);
      await b.driver.waitFor(() => heldSeqs(b, chatId).size >= 20, `pushes in ${chatId}`, 30_000);
      expectOneGaplessOrder(a, b, chatId, 20);
      expectOneGaplessOrder(b, a, chatId, 20);
    }
  });
});
