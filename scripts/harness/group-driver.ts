/**
 * Groups for the frame-level tests and benchmarks: drafts a membership
 * operation with the shared rules (protocol/src/wire/group-operation.ts),
 * signs it with the device's key and sends it over a FrameDriver. It keeps
 * the chain state it made, as a client would; a test may sign whatever it
 * likes (a non-admin's change, a forged operation) with `signOperation`.
 */
import { sign } from "node:crypto";
import {
  type GroupState,
  draftOperation,
  operationMessageId,
  operationProof,
  ChatKind,
  type CreateChatRequest,
  GroupOperationKind,
  type SendMessageResponse,
  type SignedGroupOperation,
  newId,
} from "@remessenger/protocol";
import type { DeviceKey, FrameDriver, Identity } from "./frame-driver.ts";

export function signOperation(key: DeviceKey, operation: Uint8Array): SignedGroupOperation {
  return { operation, signature: new Uint8Array(sign(null, operationProof(operation), key.privateKey)) };
}

export interface GroupHandle {
  chatId: string;
  /** The chain as this driver made it. */
  state: GroupState;
}

/** The CreateChat request of a new group of `me` and `memberUserIds` (me its only admin), and its chain state. */
export function groupGenesis(
  me: Identity,
  memberUserIds: readonly string[],
  title = "group",
): { request: CreateChatRequest; state: GroupState } {
  const chatId = newId("chat");
  const { operation, next } = draftOperation(chatId, undefined, {
    kind: GroupOperationKind.GROUP_OPERATION_KIND_CREATE,
    userIds: [me.userId, ...memberUserIds],
    title,
    actorUserId: me.userId,
    actorDeviceId: me.deviceId,
    createdAtMs: Date.now(),
  });
  return {
    request: {
      kind: ChatKind.CHAT_KIND_GROUP,
      memberUserIds: [],
      title,
      chatId,
      genesis: signOperation(me.key, operation),
    },
    state: next,
  };
}

/** Creates a group of `me` and `memberUserIds` (me its only admin). */
export async function createGroup(
  driver: FrameDriver,
  me: Identity,
  memberUserIds: readonly string[],
  title = "group",
): Promise<GroupHandle> {
  const { request, state } = groupGenesis(me, memberUserIds, title);
  await driver.call({ $case: "createChat", value: request });
  return { chatId: state.chatId, state };
}

/** Sends a signed operation as a member would (message id from its hash). */
export function sendOperation(
  driver: FrameDriver,
  chatId: string,
  signed: SignedGroupOperation,
): Promise<SendMessageResponse> {
  return driver.call({
    $case: "sendMessage",
    value: {
      chatId,
      messageId: operationMessageId(signed.operation),
      payload: new Uint8Array(0),
      devicePayloads: [],
      groupOperation: signed,
    },
  });
}

/**
 * Drafts `kind` on the group's chain as `me`, signs and sends it; the handle
 * moves on once the server took it. The rules refuse locally what they
 * forbid; `draftAs` signs on top of another state (a non-admin's view).
 */
export async function changeGroup(
  driver: FrameDriver,
  me: Identity,
  group: GroupHandle,
  kind: GroupOperationKind,
  userIds: readonly string[] = [],
  title?: string,
): Promise<SendMessageResponse> {
  const { operation, next } = draftOperation(group.chatId, group.state, {
    kind,
    userIds,
    ...(title === undefined ? {} : { title }),
    actorUserId: me.userId,
    actorDeviceId: me.deviceId,
    createdAtMs: Date.now(),
  });
  const answer = await sendOperation(driver, group.chatId, signOperation(me.key, operation));
  group.state = next;
  return answer;
}
