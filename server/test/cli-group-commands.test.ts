/**
 * The `group` commands of the real CLI against a real server: create, add,
 * promote, demote, remove, rename, rotate and members, each a signed
 * operation; a non-admin's change is refused; and an operation the server's
 * store holds but no admin signed (what a compromised server would inject)
 * is refused by the members and changes nothing.
 */
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { draftOperation, type GroupState, newMessageId, GroupOperationKind } from "@remessenger/protocol";
import { type CliUser, initUser, profileRoot, runCli, runCliJson, startCli } from "../../scripts/harness/cli.ts";
import { STORE_KINDS, type ServerUnderTest, forgeGroupOperation, startServerOn } from "./store-targets.ts";

interface Members {
  chatId: string;
  title: string;
  epoch: number;
  members: string[];
  admins: string[];
  verifiedSeq: number;
  serverSeq: number;
  refused: Array<{ seq: number; reason: string }>;
}

const profiles = profileRoot();
const servers: ServerUnderTest[] = [];

afterAll(async () => {
  for (const target of servers) await target.stop();
  profiles.dispose();
});

async function startOn(kind: (typeof STORE_KINDS)[number]): Promise<ServerUnderTest> {
  const target = await startServerOn(kind);
  servers.push(target);
  return target;
}

function group(user: CliUser, args: readonly string[]): Promise<Record<string, unknown>> {
  return runCliJson(user.profile, ["group", ...args]);
}

const sorted = (...ids: string[]): string[] => [...ids].sort();

describe("group commands", () => {
  it("create, add, promote, remove, demote, rename, rotate and members; a non-admin's change is refused", async () => {
    const { server } = await startOn("embedded");
    const [alice, bob, carol] = await Promise.all(
      ["alice", "bob", "carol"].map((name) => initUser(profiles.profile(`tour-${name}`), server.url, name)),
    );
    if (alice === undefined || bob === undefined || carol === undefined) throw new Error("users missing");
    const { chatId } = (await group(alice, ["create", "--name", "crew", "--members", bob.userId])) as {
      chatId: string;
    };

    const asBob = (await group(bob, ["members", chatId])) as unknown as Members;
    expect(asBob).toMatchObject({ title: "crew", epoch: 1, admins: [alice.userId], verifiedSeq: 1, refused: [] });
    expect(asBob.members).toEqual(sorted(alice.userId, bob.userId));

    const refused = await runCli(bob.profile, ["--json", "group", "add", chatId, carol.userId]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/NOT-ADMIN|not an admin/);

    expect(await group(alice, ["add", chatId, carol.userId])).toMatchObject({ change: "added", epoch: 2 });
    expect(await group(alice, ["promote", chatId, carol.userId])).toMatchObject({ change: "promoted", epoch: 2 });
    // Carol, an admin now, removes Bob.
    expect(await group(carol, ["remove", chatId, bob.userId])).toMatchObject({
      change: "removed",
      users: [bob.userId],
      epoch: 3,
    });
    expect(await group(alice, ["demote", chatId, carol.userId])).toMatchObject({ admins: [alice.userId] });
    expect(await group(alice, ["rename", chatId, "crew two"])).toMatchObject({ change: "renamed", title: "crew two" });
    expect(await group(alice, ["rotate", chatId])).toMatchObject({ change: "rotated", epoch: 4, rotation: true });

    const asCarol = (await group(carol, ["members", chatId])) as unknown as Members;
    expect(asCarol).toMatchObject({
      title: "crew two",
      epoch: 4,
      admins: [alice.userId],
      verifiedSeq: 7,
      serverSeq: 7,
    });
    expect(asCarol.members).toEqual(sorted(alice.userId, carol.userId));
    // Bob is no member any more: the server shows him nothing of the group.
    expect((await runCli(bob.profile, ["--json", "group", "members", chatId])).code).not.toBe(0);
  });
});

describe.each(STORE_KINDS)("a forged membership operation (%s store)", (kind) => {
  it("is refused by the members: nobody is added, and listen shows why", async () => {
    const target = await startOn(kind);
    const { server } = target;
    const [alice, bob, mallory] = await Promise.all(
      ["alice", "bob", "mallory"].map((name) => initUser(profiles.profile(`${kind}-${name}`), server.url, name)),
    );
    if (alice === undefined || bob === undefined || mallory === undefined) throw new Error("users missing");
    const { chatId } = (await group(alice, ["create", "--name", "safe", "--members", bob.userId])) as {
      chatId: string;
    };
    const before = (await group(bob, ["members", chatId])) as unknown as Members;

    // What a compromised server can do: store an ADD in Alice's name, which it cannot sign.
    await server.stop();
    const store = await target.openStore();
    try {
      const chat = await store.getChat(chatId);
      if (chat === undefined) throw new Error("group missing from the store");
      const state: GroupState = {
        chatId,
        title: chat.title,
        members: before.members,
        admins: before.admins,
        epoch: before.epoch,
        lastOperationHash: chat.lastOperationHash ?? new Uint8Array(0),
      };
      const devices = await store.listUserDevices(alice.userId);
      const malloryDevices = (await store.listUserDevices(mallory.userId)).map((d) => d.deviceId);
      const forged = draftOperation(chatId, state, {
        kind: GroupOperationKind.GROUP_OPERATION_KIND_ADD,
        userIds: [mallory.userId],
        actorUserId: alice.userId,
        actorDeviceId: devices[0]?.deviceId ?? "",
        createdAtMs: Date.now(),
      });
      await forgeGroupOperation(
        store,
        chatId,
        {
          messageId: newMessageId(),
          senderUserId: alice.userId,
          senderDeviceId: devices[0]?.deviceId ?? "",
          serverTimeMs: Date.now(),
          payload: new Uint8Array(0),
          devicePayloads: [],
          groupOperation: { operation: forged.operation, signature: new Uint8Array(randomBytes(64)) },
        },
        {
          previousHash: state.lastOperationHash,
          operationHash: forged.next.lastOperationHash,
          record: { ...chat, memberUserIds: forged.next.members, adminUserIds: forged.next.admins, epoch: 2 },
          addedDeviceIds: malloryDevices,
          addedUserIds: [mallory.userId],
          removedDeviceIds: [],
          removedUserIds: [],
        },
      );
    } finally {
      await store.close();
    }
    await server.restart();

    const after = (await group(bob, ["members", chatId])) as unknown as Members;
    expect(after.members).toEqual(sorted(alice.userId, bob.userId));
    expect(after).toMatchObject({ epoch: 1, verifiedSeq: 1, serverSeq: 2 });
    expect(after.refused).toEqual([expect.objectContaining({ seq: 2, reason: "bad-signature" })]);

    const listen = startCli(bob.profile, ["--server", server.url, "listen", "--json"]);
    try {
      const line = await listen.next((l) => l.type === "group" && l.seq === 2);
      expect(line).toMatchObject({ chatId, change: "refused", actor: alice.userId });
      expect(String(line.reason)).toMatch(/bad-signature/);
    } finally {
      await listen.stop();
    }
  });
});
