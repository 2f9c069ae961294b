import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  isError,
  checkReceivedOperations,
  decodeOperation,
  draftOperation,
  operationProof,
  newMessageId,
  ErrorCode,
  GroupOperationKind,
  type Message,
} from "@remessenger/protocol";
import { FrameDriver, type Identity } from "../../scripts/harness/frame-driver.ts";
import {
  changeGroup,
  createGroup,
  sendOperation,
  signOperation,
  type GroupHandle,
} from "../../scripts/harness/group-driver.ts";
import { verifyDeviceSignature } from "../src/core/device-auth.ts";
import { STORE_KINDS, forgeGroupOperation, startServerOn, type ServerUnderTest } from "./store-targets.ts";

const { ADD, REMOVE, PROMOTE, RENAME } = {
  ADD: GroupOperationKind.GROUP_OPERATION_KIND_ADD,
  REMOVE: GroupOperationKind.GROUP_OPERATION_KIND_REMOVE,
  PROMOTE: GroupOperationKind.GROUP_OPERATION_KIND_PROMOTE,
  RENAME: GroupOperationKind.GROUP_OPERATION_KIND_RENAME,
};

interface Member {
  id: Identity;
  driver: FrameDriver;
}

/** What a member saw of the group: "text" for messages, "op:<kind>" for operations, by seq. */
function seen(messages: Message[], chatId: string): string[] {
  return messages
    .filter((m) => m.chatId === chatId)
    .map((m) =>
      m.groupOperation === undefined
        ? `${m.seq}:${new TextDecoder().decode(m.payload)}`
        : `${m.seq}:op${decodeOperation(m.groupOperation).kind}`,
    );
}

describe.each(STORE_KINDS)("groups (%s store)", (kind) => {
  let target: ServerUnderTest;
  let url: string;
  const drivers: FrameDriver[] = [];

  beforeAll(async () => {
    target = await startServerOn(kind);
    url = target.server.url;
  });

  afterAll(async () => {
    for (const driver of drivers) driver.close();
    await target.stop();
  });

  async function member(name: string): Promise<Member> {
    const driver = await FrameDriver.connect(url);
    drivers.push(driver);
    return { id: await driver.register(name), driver };
  }

  async function listening(name: string): Promise<Member> {
    const m = await member(name);
    await m.driver.subscribe();
    return m;
  }

  it("refuses a non-admin's membership change, and applies the admin's", async () => {
    const [alice, bob, carol] = await Promise.all([member("alice"), member("bob"), member("carol")]);
    const group = await createGroup(alice.driver, alice.id, [bob.id.userId]);

    // Bob signs an ADD as if he were an admin: the server checks the chain it holds.
    const asAdmin = { ...group.state, admins: [...group.state.admins, bob.id.userId].sort() };
    const { operation } = draftOperation(group.chatId, asAdmin, {
      kind: ADD,
      userIds: [carol.id.userId],
      actorUserId: bob.id.userId,
      actorDeviceId: bob.id.deviceId,
      createdAtMs: Date.now(),
    });
    await expect(sendOperation(bob.driver, group.chatId, signOperation(bob.id.key, operation))).rejects.toSatisfy(
      (e) => isError(e, ErrorCode.ERROR_CODE_PERMISSION_DENIED) && /not-admin/.test(e.message),
    );
    // An operation signed by a key that is not the sender's is refused too.
    const { operation: byAlice } = draftOperation(group.chatId, group.state, {
      kind: ADD,
      userIds: [carol.id.userId],
      actorUserId: alice.id.userId,
      actorDeviceId: alice.id.deviceId,
      createdAtMs: Date.now(),
    });
    await expect(sendOperation(alice.driver, group.chatId, signOperation(bob.id.key, byAlice))).rejects.toSatisfy((e) =>
      isError(e, ErrorCode.ERROR_CODE_UNAUTHENTICATED),
    );

    let chat = (await alice.driver.call({ $case: "getChat", value: { chatId: group.chatId } })).chat;
    expect(chat?.memberUserIds.sort()).toEqual([alice.id.userId, bob.id.userId].sort());
    expect(chat?.headSeq).toBe(1);

    expect(await changeGroup(alice.driver, alice.id, group, ADD, [carol.id.userId])).toMatchObject({ seq: 2 });
    chat = (await carol.driver.call({ $case: "getChat", value: { chatId: group.chatId } })).chat;
    expect(chat?.memberUserIds.sort()).toEqual([alice.id.userId, bob.id.userId, carol.id.userId].sort());
    expect(chat?.group).toMatchObject({ adminUserIds: [alice.id.userId], epoch: 2, lastOperationSeq: 2 });

    // The same operation sent again is a duplicate, not a second change.
    const ops = await alice.driver.call({
      $case: "getGroupOperations",
      value: { chatId: group.chatId, afterSeq: 0, limit: 0 },
    });
    expect(ops.operations.map((m) => m.seq)).toEqual([1, 2]);
    const last = ops.operations[1]?.groupOperation;
    if (last === undefined) throw new Error("no operation at seq 2");
    expect(await sendOperation(alice.driver, group.chatId, last)).toMatchObject({ seq: 2, duplicate: true });

    // A change drafted on an old head is refused as GROUP_CHANGED.
    const stale: GroupHandle = {
      chatId: group.chatId,
      state: { ...group.state, lastOperationHash: new Uint8Array(32) },
    };
    await expect(changeGroup(alice.driver, alice.id, stale, RENAME, [], "x")).rejects.toSatisfy((e) =>
      isError(e, ErrorCode.ERROR_CODE_GROUP_CHANGED),
    );
  });

  it("delivers messages and membership changes in one order; the removed get nothing after, the added nothing before", async () => {
    const [alice, bob, carol] = await Promise.all([listening("alice"), listening("bob"), listening("carol")]);
    const dave = await member("dave");
    const group = await createGroup(alice.driver, alice.id, [bob.id.userId, carol.id.userId]);
    // What each member sent itself, by seq: a device caught up on its own send gets no echo of it.
    const sent = new Map<FrameDriver, string[]>([[alice.driver, ["1:op1"]]]);
    const note = (m: Member, entry: string): void => {
      sent.set(m.driver, [...(sent.get(m.driver) ?? []), entry]);
    };
    const say = async (m: Member, text: string): Promise<void> => {
      note(m, `${(await m.driver.send(group.chatId, text)).seq}:${text}`);
    };
    const change = async (kind: GroupOperationKind, userId: string): Promise<void> => {
      note(alice, `${(await changeGroup(alice.driver, alice.id, group, kind, [userId])).seq}:op${kind}`);
    };
    /** Everything the member has of the group: pushed (in push order, which must be seq order) and its own. */
    const timeline = (m: Member): string[] => {
      const pushed = seen(m.driver.messages(), group.chatId);
      const seqs = pushed.map((e) => Number(e.split(":")[0]));
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      return [...new Set([...pushed, ...(sent.get(m.driver) ?? [])])].sort(
        (a, b) => Number(a.split(":")[0]) - Number(b.split(":")[0]),
      );
    };

    await say(alice, "a1");
    await say(bob, "b1");
    await change(ADD, dave.id.userId);
    await dave.driver.subscribe();
    await say(carol, "c1");
    await change(PROMOTE, carol.id.userId);
    await change(REMOVE, bob.id.userId);
    await expect(bob.driver.send(group.chatId, "b2")).rejects.toSatisfy((e) =>
      isError(e, ErrorCode.ERROR_CODE_NOT_FOUND),
    );
    await say(dave, "d1");
    await say(carol, "c2");

    const everything = ["1:op1", "2:a1", "3:b1", "4:op2", "5:c1", "6:op5", "7:op3", "8:d1", "9:c2"];
    for (const m of [alice, carol]) {
      await m.driver.waitFor(() => timeline(m).length === 9, `${m.id.userId} gets all`);
      expect(timeline(m)).toEqual(everything);
    }
    await dave.driver.waitFor(() => timeline(dave).length === 6, "dave from his add on");
    expect(timeline(dave)).toEqual(everything.slice(3));
    // Bob: everything through his removal, then nothing, also after a ping round trip.
    await bob.driver.waitFor(() => timeline(bob).length === 7, "bob through his removal");
    await bob.driver.call({ $case: "ping", value: { clientTimeMs: 1 } });
    expect(timeline(bob)).toEqual(everything.slice(0, 7));

    // Acked through his removal (an ack past it stops there), a reconnecting removed member gets
    // nothing of the group; the group is not listed for him.
    await bob.driver.call({ $case: "ack", value: { acks: [{ chatId: group.chatId, throughSeq: 9 }] } });
    const again = await FrameDriver.connect(url);
    drivers.push(again);
    await again.login(bob.id);
    await again.subscribe();
    await again.waitFor(() => again.isSynced(), "bob's sync");
    expect(seen(again.messages(), group.chatId)).toEqual([]);
    const listed = await again.call({ $case: "listChats", value: {} });
    expect(listed.chats.map((c) => c.chatId)).not.toContain(group.chatId);
    await expect(
      again.call({ $case: "getGroupOperations", value: { chatId: group.chatId, afterSeq: 0, limit: 0 } }),
    ).rejects.toSatisfy((e) => isError(e, ErrorCode.ERROR_CODE_NOT_FOUND));
  });

  it("gives a member removed while offline what it missed through its removal on its next connection, once, and nothing after", async () => {
    const [alice, bob] = await Promise.all([listening("alice"), listening("bob")]);
    const carol = await listening("carol");
    const group = await createGroup(alice.driver, alice.id, [bob.id.userId, carol.id.userId]);
    await carol.driver.waitFor(() => seen(carol.driver.messages(), group.chatId).length === 1, "carol's CREATE");
    await carol.driver.call({ $case: "ack", value: { acks: [{ chatId: group.chatId, throughSeq: 1 }] } });
    carol.driver.close();
    await carol.driver.closed;

    const missed = ["m1", "m2", "m3", "m4", "m5"];
    for (const text of missed) await alice.driver.send(group.chatId, text);
    const removal = await changeGroup(alice.driver, alice.id, group, REMOVE, [carol.id.userId]);
    expect(removal.seq).toBe(7);
    for (const text of ["after1", "after2"]) await alice.driver.send(group.chatId, text);
    // Bob acks everything: only carol's cursor holds her entries back now.
    await bob.driver.waitFor(() => seen(bob.driver.messages(), group.chatId).length === 9, "bob gets all");
    await bob.driver.call({ $case: "ack", value: { acks: [{ chatId: group.chatId, throughSeq: 9 }] } });
    await alice.driver.call({ $case: "ack", value: { acks: [{ chatId: group.chatId, throughSeq: 9 }] } });

    const owed = [...missed.map((text, i) => `${i + 2}:${text}`), "7:op3"];
    const back = await FrameDriver.connect(url);
    drivers.push(back);
    await back.login(carol.id);
    await back.subscribe();
    await back.waitFor(() => back.isSynced(), "carol's sync");
    expect(seen(back.messages(), group.chatId)).toEqual(owed);
    // Sent after her return: nothing reaches her (a ping round trip lets anything in flight arrive).
    await alice.driver.send(group.chatId, "after3");
    await back.call({ $case: "ping", value: { clientTimeMs: 1 } });
    expect(seen(back.messages(), group.chatId)).toEqual(owed);

    // Not acked: owed again on the next connection. Acked through the removal: nothing more, ever.
    back.close();
    const twice = await FrameDriver.connect(url);
    drivers.push(twice);
    await twice.login(carol.id);
    await twice.subscribe();
    await twice.waitFor(() => twice.isSynced(), "carol's second sync");
    expect(seen(twice.messages(), group.chatId)).toEqual(owed);
    await twice.call({ $case: "ack", value: { acks: [{ chatId: group.chatId, throughSeq: 10 }] } });
    twice.close();
    const done = await FrameDriver.connect(url);
    drivers.push(done);
    await done.login(carol.id);
    await done.subscribe();
    await done.waitFor(() => done.isSynced(), "carol's last sync");
    expect(seen(done.messages(), group.chatId)).toEqual([]);
  });

  it("lets clients reject a forged membership operation written straight into the store", async () => {
    const [alice, bob, mallory] = await Promise.all([member("alice"), member("bob"), member("mallory")]);
    const group = await createGroup(alice.driver, alice.id, [bob.id.userId]);
    await alice.driver.send(group.chatId, "before");

    // The store (as a compromised server would) appends Bob's own ADD of Mallory, bypassing every check.
    const asAdmin = { ...group.state, admins: [...group.state.admins, bob.id.userId].sort() };
    const forged = draftOperation(group.chatId, asAdmin, {
      kind: ADD,
      userIds: [mallory.id.userId],
      actorUserId: bob.id.userId,
      actorDeviceId: bob.id.deviceId,
      createdAtMs: Date.now(),
    });
    await target.server.stop();
    const store = await target.openStore();
    try {
      const chat = await store.getChat(group.chatId);
      if (chat === undefined) throw new Error("group missing from the store");
      await forgeGroupOperation(
        store,
        group.chatId,
        {
          messageId: newMessageId(),
          senderUserId: bob.id.userId,
          senderDeviceId: bob.id.deviceId,
          serverTimeMs: Date.now(),
          payload: new Uint8Array(0),
          devicePayloads: [],
          groupOperation: signOperation(bob.id.key, forged.operation),
        },
        {
          previousHash: chat.lastOperationHash ?? new Uint8Array(0),
          operationHash: forged.next.lastOperationHash,
          record: { ...chat, memberUserIds: forged.next.members, adminUserIds: forged.next.admins, epoch: 2 },
          addedDeviceIds: [mallory.id.deviceId],
          addedUserIds: [mallory.id.userId],
          removedDeviceIds: [],
          removedUserIds: [],
        },
      );
    } finally {
      await store.close();
    }
    await target.server.restart();

    const reader = await FrameDriver.connect(url);
    drivers.push(reader);
    await reader.login(alice.id);
    const { operations } = await reader.call({
      $case: "getGroupOperations",
      value: { chatId: group.chatId, afterSeq: 0, limit: 0 },
    });
    expect(operations.map((m) => m.seq)).toEqual([1, 3]);
    const keys = new Map([
      [alice.id.deviceId, alice.id.key.publicKey],
      [bob.id.deviceId, bob.id.key.publicKey],
    ]);
    const checked = await checkReceivedOperations(
      group.chatId,
      undefined,
      operations.map((m) => ({
        seq: m.seq,
        signed: m.groupOperation ?? { operation: new Uint8Array(0), signature: new Uint8Array(0) },
        senderUserId: m.senderUserId,
        senderDeviceId: m.senderDeviceId,
      })),
      (operation, signed) => {
        const key = keys.get(operation.actorDeviceId);
        if (key === undefined) return Promise.resolve(false);
        try {
          verifyDeviceSignature(key, operationProof(signed.operation), signed.signature);
          return Promise.resolve(true);
        } catch {
          return Promise.resolve(false);
        }
      },
    );
    expect(checked.verdicts.map((v) => [v.seq, v.isAccepted, v.isAccepted ? "" : v.reason])).toEqual([
      [1, true, ""],
      [3, false, "not-admin"],
    ]);
    expect(checked.state?.members).toEqual([alice.id.userId, bob.id.userId].sort());
  });
});
