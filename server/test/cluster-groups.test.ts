/**
 * Groups on many nodes: three server nodes on a real Redis Cluster, members
 * connected to different nodes. A group's events go once to the group's
 * channel and each node hands them to the members connected there; a member
 * added later starts hearing the group through its own channel; a removed
 * member's node stops. Every member sees one gapless order.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeOperation, GroupOperationKind, type Message } from "@remessenger/protocol";
import { FrameDriver, type Identity } from "../../scripts/harness/frame-driver.ts";
import { changeGroup, createGroup } from "../../scripts/harness/group-driver.ts";
import { type ClusterUnderTest, startCluster } from "./cluster-fixture.ts";

let cluster: ClusterUnderTest;
const drivers: FrameDriver[] = [];

beforeAll(async () => {
  cluster = await startCluster();
  await cluster.settled();
});

afterAll(async () => {
  for (const driver of drivers) driver.close();
  await cluster.stop();
});

interface Member {
  driver: FrameDriver;
  id: Identity;
  /** Seqs this member sent (answered), by seq: a caught-up sender gets no echo. */
  sent: Set<number>;
}

async function member(nodeIndex: number, name: string): Promise<Member> {
  const node = cluster.nodes[nodeIndex];
  if (node === undefined) throw new Error(`no node ${nodeIndex}`);
  const driver = await FrameDriver.connect(node.url);
  drivers.push(driver);
  const id = await driver.register(name);
  await driver.subscribe();
  await driver.waitFor(() => driver.isSynced(), `${name}'s sync`);
  return { driver, id, sent: new Set() };
}

function pushed(m: Member, chatId: string): Message[] {
  return m.driver.messages().filter((message) => message.chatId === chatId);
}

/** Everything the member holds of the group: pushed (strictly increasing) and its own. */
function held(m: Member, chatId: string): number[] {
  const seqs = pushed(m, chatId).map((message) => message.seq);
  for (let i = 1; i < seqs.length; i += 1) expect(seqs[i]).toBeGreaterThan(seqs[i - 1] ?? 0);
  return [...new Set([...seqs, ...m.sent])].sort((a, b) => a - b);
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function say(m: Member, chatId: string, count: number): Promise<void> {
  for (let i = 0; i < count; i += 1) m.sent.add((await m.driver.send(chatId, `${m.id.userId} ${i}`)).seq);
}

describe("groups on three nodes", () => {
  it("delivers a group's messages and changes in one order to members on every node; the added hear from their addition, the removed stop", async () => {
    const [alice, bob, carol, dave] = await Promise.all([
      member(0, "alice"),
      member(1, "bob"),
      member(2, "carol"),
      member(1, "dave"),
    ]);
    const group = await createGroup(alice.driver, alice.id, [bob.id.userId, carol.id.userId]);
    alice.sent.add(1);
    const { chatId } = group;

    await Promise.all([say(alice, chatId, 10), say(bob, chatId, 10), say(carol, chatId, 10)]);
    const added = await changeGroup(alice.driver, alice.id, group, GroupOperationKind.GROUP_OPERATION_KIND_ADD, [
      dave.id.userId,
    ]);
    alice.sent.add(added.seq);
    await Promise.all([say(dave, chatId, 5), say(bob, chatId, 5)]);
    const removed = await changeGroup(alice.driver, alice.id, group, GroupOperationKind.GROUP_OPERATION_KIND_REMOVE, [
      carol.id.userId,
    ]);
    alice.sent.add(removed.seq);
    await Promise.all([say(bob, chatId, 5), say(dave, chatId, 5)]);
    const total = removed.seq + 10;

    for (const m of [alice, bob]) {
      await m.driver.waitFor(() => held(m, chatId).length === total, `${m.id.userId} holds all ${total}`);
      expect(held(m, chatId)).toEqual(range(1, total));
    }
    await dave.driver.waitFor(() => held(dave, chatId).length === total - added.seq + 1, "dave from his addition");
    expect(held(dave, chatId)).toEqual(range(added.seq, total));
    await carol.driver.waitFor(() => held(carol, chatId).length === removed.seq, "carol through her removal");
    await carol.driver.call({ $case: "ping", value: { clientTimeMs: 1 } });
    expect(held(carol, chatId)).toEqual(range(1, removed.seq));
    const last = pushed(carol, chatId).at(-1)?.groupOperation;
    expect(last === undefined ? undefined : decodeOperation(last).kind).toBe(
      GroupOperationKind.GROUP_OPERATION_KIND_REMOVE,
    );
  });
});
