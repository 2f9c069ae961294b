import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type GroupOperationFailure,
  type GroupState,
  GroupOperationError,
  checkReceivedOperations,
  decodeOperation,
  draftOperation,
  nextGroupState,
} from "./group-operation.ts";
import { newId } from "./ids.ts";
import { GroupOperation, GroupOperationKind } from "./proto.ts";

const K = GroupOperationKind;
const users = Array.from({ length: 6 }, () => newId("user"));
const [alice = "", bob = "", carol = "", dave = ""] = users;
const device = newId("device");

function act(
  chatId: string,
  state: GroupState | undefined,
  kind: GroupOperationKind,
  actor: string,
  userIds: string[] = [],
  title?: string,
) {
  return draftOperation(chatId, state, {
    kind,
    userIds,
    ...(title === undefined ? {} : { title }),
    actorUserId: actor,
    actorDeviceId: device,
    createdAtMs: 1,
  });
}

/** A group of alice (admin), bob and carol. */
function created(): { chatId: string; state: GroupState; bytes: Uint8Array } {
  const chatId = newId("chat");
  const { operation, next } = act(chatId, undefined, K.GROUP_OPERATION_KIND_CREATE, alice, [alice, bob, carol], "crew");
  return { chatId, state: next, bytes: operation };
}

function refusal(run: () => unknown): GroupOperationFailure | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    if (error instanceof GroupOperationError) return error.reason;
    throw error;
  }
}

describe("group operations", () => {
  it("replays a chain drafted by admins to the very state each draft promised", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            kind: fc.constantFrom(
              K.GROUP_OPERATION_KIND_ADD,
              K.GROUP_OPERATION_KIND_REMOVE,
              K.GROUP_OPERATION_KIND_PROMOTE,
              K.GROUP_OPERATION_KIND_DEMOTE,
              K.GROUP_OPERATION_KIND_RENAME,
              K.GROUP_OPERATION_KIND_ROTATE,
              K.GROUP_OPERATION_KIND_LEAVE,
            ),
            user: fc.constantFrom(...users),
            actor: fc.constantFrom(...users),
          }),
          { maxLength: 30 },
        ),
        (steps) => {
          const { chatId, state: first, bytes } = created();
          let drafted = first;
          let replayed = nextGroupState(chatId, undefined, bytes, GroupOperation.decode(bytes));
          for (const step of steps) {
            let draft;
            try {
              draft = act(chatId, drafted, step.kind, step.actor, [step.user], `t${step.user}`);
            } catch (error) {
              if (error instanceof GroupOperationError) continue; // the rules refuse it: nothing to send
              throw error;
            }
            replayed = nextGroupState(
              chatId,
              replayed,
              draft.operation,
              decodeOperation({ operation: draft.operation, signature: new Uint8Array() }),
            );
            expect(replayed).toEqual(draft.next);
            drafted = draft.next;
            // The invariants of every state.
            expect(drafted.admins.every((a) => drafted.members.includes(a))).toBe(true);
            if (drafted.members.length > 0) expect(drafted.admins.length).toBeGreaterThan(0);
          }
        },
      ),
    );
  });

  it("refuses what the rules forbid", () => {
    const { chatId, state } = created();
    expect(refusal(() => act(chatId, state, K.GROUP_OPERATION_KIND_ADD, bob, [dave]))).toBe("not-admin");
    expect(refusal(() => act(chatId, state, K.GROUP_OPERATION_KIND_ADD, dave, [dave]))).toBe("not-member");
    expect(refusal(() => act(chatId, state, K.GROUP_OPERATION_KIND_LEAVE, alice))).toBe("last-admin");
    expect(refusal(() => act(chatId, state, K.GROUP_OPERATION_KIND_DEMOTE, alice, [alice]))).toBe("last-admin");
    expect(refusal(() => act(chatId, state, K.GROUP_OPERATION_KIND_ADD, alice, [bob]))).toBe("bad-users");
    expect(refusal(() => act(chatId, state, K.GROUP_OPERATION_KIND_REMOVE, alice, [alice]))).toBe("bad-users");
    expect(refusal(() => act(chatId, state, K.GROUP_OPERATION_KIND_CREATE, alice, [alice]))).toBe("does-not-follow");
    // Any member may leave; the epoch moves.
    expect(act(chatId, state, K.GROUP_OPERATION_KIND_LEAVE, bob).next).toMatchObject({
      epoch: 2,
      members: [alice, carol].sort(),
    });
  });

  it("refuses an operation that does not follow, claims another state or epoch, or belongs to another chat", () => {
    const { chatId, state } = created();
    const { operation } = act(chatId, state, K.GROUP_OPERATION_KIND_ADD, alice, [dave]);
    const op = GroupOperation.decode(operation);
    const tampered = (change: Partial<GroupOperation>): GroupOperationFailure | undefined => {
      const bytes = GroupOperation.encode({ ...op, ...change }).finish();
      return refusal(() => nextGroupState(chatId, state, bytes, GroupOperation.decode(bytes)));
    };
    expect(tampered({})).toBeUndefined();
    expect(tampered({ previousHash: new Uint8Array(32) })).toBe("does-not-follow");
    expect(tampered({ stateHash: new Uint8Array(32) })).toBe("wrong-state");
    expect(tampered({ epoch: 7 })).toBe("wrong-epoch");
    expect(tampered({ chatId: newId("chat") })).toBe("wrong-chat");
    expect(tampered({ userIds: [dave, alice] })).toBe("bad-users");
  });

  it("lets a client refuse an operation with a bad signature or another sender, and keeps its state", async () => {
    const { chatId, state, bytes } = created();
    const add = act(chatId, state, K.GROUP_OPERATION_KIND_ADD, alice, [dave]);
    const signature = new Uint8Array(64);
    const entry = (seq: number, operation: Uint8Array, sender = alice) => ({
      seq,
      signed: { operation, signature },
      senderUserId: sender,
      senderDeviceId: device,
    });
    const valid = (operation: Uint8Array) => operation !== add.operation;
    const checked = await checkReceivedOperations(
      chatId,
      undefined,
      [entry(1, bytes), entry(2, add.operation)],
      (_op, signed) => Promise.resolve(valid(signed.operation)),
    );
    expect(checked.verdicts.map((v) => (v.isAccepted ? "ok" : v.reason))).toEqual(["ok", "bad-signature"]);
    expect(checked.state).toEqual(state);
    const spoofed = await checkReceivedOperations(chatId, state, [entry(2, add.operation, bob)], () =>
      Promise.resolve(true),
    );
    expect(spoofed.verdicts.map((v) => (v.isAccepted ? "ok" : v.reason))).toEqual(["bad-signature"]);
    expect(spoofed.state).toEqual(state);
  });
});
