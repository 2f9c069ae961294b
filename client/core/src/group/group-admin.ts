/**
 * Changing a group from a client: the CREATE that makes it, and the signed
 * membership operations after it (add, remove, leave, promote, demote,
 * rename, rotate). Each is drafted with the shared rules
 * (wire/group-operation.ts) on top of the chain this device verified, signed
 * with the device's identity key and sent as a message of the group; the
 * server applies it only on the head it names.
 *
 * Invariants:
 * - An operation follows the newest chain: the device compares its chain with
 *   the server's head first, and when another admin got in between
 *   (GROUP_CHANGED) it catches up and drafts again, a bounded number of times.
 * - The operation's message id comes from its hash, so sending it again (a
 *   lost answer) is a duplicate, never a second change.
 * - Once the server took it, the device applies the operation at once, so its
 *   very next message is sealed in the new epoch (a removed member gets
 *   nothing of it, not even through the grace window).
 */
import type { DeviceSigner } from "../crypto/device-signer.ts";
import {
  RemessengerError,
  isError,
  newId,
  draftOperation,
  operationMessageId,
  operationProof,
  type GroupState,
  type Chat,
  ChatKind,
  ErrorCode,
  GroupOperationKind,
  type SendMessageRequest,
  type SendMessageResponse,
  type SignedGroupOperation,
} from "@remessenger/protocol";
import type { GroupChange } from "./group-chain.ts";
import type { GroupSessions } from "./group-sessions.ts";

/** Drafts tried when other admins keep changing the group first. */
export const MAX_DRAFT_ROUNDS = 4;

/** What a change needs from the session: who acts, its keys, the group layer and the server. */
export interface GroupAdminPort {
  userId: string;
  deviceId: string;
  /** The device's identity key: operations are signed with it. */
  signer: DeviceSigner;
  groups: GroupSessions;
  createChat(request: {
    chatId: string;
    title: string;
    genesis: SignedGroupOperation;
  }): Promise<{ chat: Chat | undefined; created: boolean }>;
  sendMessage(request: SendMessageRequest): Promise<SendMessageResponse>;
  nowMs(): number;
}

/** A change to ask for (CREATE has its own call). */
export type GroupChangeRequest =
  | { kind: "add" | "remove" | "promote" | "demote"; userIds: readonly string[] }
  | { kind: "leave" | "rotate" }
  | { kind: "rename"; title: string };

const KINDS = {
  add: GroupOperationKind.GROUP_OPERATION_KIND_ADD,
  remove: GroupOperationKind.GROUP_OPERATION_KIND_REMOVE,
  leave: GroupOperationKind.GROUP_OPERATION_KIND_LEAVE,
  promote: GroupOperationKind.GROUP_OPERATION_KIND_PROMOTE,
  demote: GroupOperationKind.GROUP_OPERATION_KIND_DEMOTE,
  rename: GroupOperationKind.GROUP_OPERATION_KIND_RENAME,
  rotate: GroupOperationKind.GROUP_OPERATION_KIND_ROTATE,
} as const;

async function sign(port: GroupAdminPort, operation: Uint8Array): Promise<SignedGroupOperation> {
  return { operation, signature: await port.signer.sign(operationProof(operation)) };
}

/** Creates a group of this user and `memberUserIds`, this user its only admin; resolves with the CREATE as applied here. */
export async function createGroup(
  port: GroupAdminPort,
  title: string,
  memberUserIds: readonly string[],
): Promise<GroupChange> {
  const chatId = newId("chat");
  const { operation } = draftOperation(chatId, undefined, {
    kind: GroupOperationKind.GROUP_OPERATION_KIND_CREATE,
    userIds: [port.userId, ...memberUserIds],
    title,
    actorUserId: port.userId,
    actorDeviceId: port.deviceId,
    createdAtMs: port.nowMs(),
  });
  const answer = await port.createChat({ chatId, title, genesis: await sign(port, operation) });
  if (answer.chat?.kind !== ChatKind.CHAT_KIND_GROUP) {
    throw new RemessengerError(ErrorCode.ERROR_CODE_INTERNAL, "the server did not answer with the group");
  }
  // The CREATE is seq 1: apply it now, as the server keeps it, so this device can send at once.
  await port.groups.refresh(chatId, true);
  const state = await port.groups.groupState(chatId);
  if (state === undefined)
    throw new RemessengerError(ErrorCode.ERROR_CODE_INTERNAL, "the group's CREATE did not apply");
  return {
    chatId,
    seq: 1,
    change: "created",
    actorUserId: port.userId,
    userIds: [...state.members],
    title: state.title,
    epoch: state.epoch,
    isRotation: true,
    members: [...state.members],
    admins: [...state.admins],
  };
}

/**
 * Drafts, signs and sends one change to `chatId` on top of the newest chain;
 * resolves with the change as applied here. Throws the rules' refusal
 * (GroupOperationError: not an admin, not a member...) before sending
 * anything, and the server's refusal (PERMISSION_DENIED) as it came.
 */
export async function changeGroup(
  port: GroupAdminPort,
  chatId: string,
  request: GroupChangeRequest,
): Promise<GroupChange> {
  for (let round = 1; ; round += 1) {
    await port.groups.refresh(chatId, true);
    const state: GroupState | undefined = await port.groups.groupState(chatId);
    if (state === undefined) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `this device knows no group ${chatId}`);
    }
    const { operation } = draftOperation(chatId, state, {
      kind: KINDS[request.kind],
      ...("userIds" in request ? { userIds: request.userIds } : {}),
      ...("title" in request ? { title: request.title } : {}),
      actorUserId: port.userId,
      actorDeviceId: port.deviceId,
      createdAtMs: port.nowMs(),
    });
    const groupOperation = await sign(port, operation);
    let answer: SendMessageResponse;
    try {
      answer = await port.sendMessage({
        chatId,
        messageId: operationMessageId(operation),
        payload: new Uint8Array(0),
        devicePayloads: [],
        groupOperation,
      });
    } catch (error) {
      // Another admin changed the group first: catch up and draft again on the new head.
      if (isError(error, ErrorCode.ERROR_CODE_GROUP_CHANGED) && round < MAX_DRAFT_ROUNDS) continue;
      throw error;
    }
    const outcome = await port.groups.applyOwnOperation({
      chatId,
      seq: answer.seq,
      messageId: operationMessageId(operation),
      senderUserId: port.userId,
      senderDeviceId: port.deviceId,
      serverTimeMs: answer.serverTimeMs,
      payload: new Uint8Array(0),
      devicePayloads: [],
      groupOperation,
    });
    if (outcome.kind === "rejected") {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_INTERNAL,
        `the server took a change this device refuses: ${outcome.reason} (${outcome.detail})`,
      );
    }
    return outcome.change;
  }
}
