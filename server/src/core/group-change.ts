/**
 * The server's check of a group operation before its chat actor appends it:
 * the operation must be signed by the sending device (its identity key), be
 * made by that device's user, and follow the group's chain under the rules of
 * protocol/src/wire/group-operation.ts (only admins change membership) —
 * the same code every client runs again on what it receives.
 *
 * Returns the store's GroupChange: the record after the operation, and the
 * devices of added members (cursors just below the operation) and of removed
 * ones (cursors dropped). Refusals are RemessengerErrors: PERMISSION_DENIED
 * for a non-admin (or an operation signed for another device), GROUP_CHANGED
 * when it does not follow the head, INVALID_ARGUMENT otherwise.
 */
import {
  RemessengerError,
  decodeOperation,
  GroupOperationError,
  type GroupState,
  nextGroupState,
  operationProof,
  ChatKind,
  ErrorCode,
  type GroupOperation,
} from "@remessenger/protocol";
import type { ChatState, GroupChange, MessageDraft, Store } from "../store/store.ts";
import { verifyDeviceSignature } from "./device-auth.ts";

export interface PlannedChange {
  change: GroupChange;
  operation: GroupOperation;
  next: GroupState;
}

/** The chain state the chat holds, or undefined before its CREATE. */
export function groupStateOf(chat: ChatState): GroupState | undefined {
  if (chat.kind !== ChatKind.CHAT_KIND_GROUP || (chat.lastOperationSeq ?? 0) === 0) return undefined;
  return {
    chatId: chat.chatId,
    title: chat.title,
    members: [...chat.memberUserIds].sort(),
    admins: [...(chat.adminUserIds ?? [])].sort(),
    epoch: chat.epoch ?? 0,
    lastOperationHash: chat.lastOperationHash ?? new Uint8Array(0),
  };
}

/** A GroupOperationError as the error a sender sees, reason included. */
export function toRemessengerError(error: GroupOperationError): RemessengerError {
  return new RemessengerError(error.code, `group operation refused (${error.reason}): ${error.message}`, {
    cause: error,
  });
}

async function devicesOf(store: Pick<Store, "listUserDevices">, userIds: readonly string[]): Promise<string[]> {
  const lists = await Promise.all(userIds.map((userId) => store.listUserDevices(userId)));
  return lists.flat().map((d) => d.deviceId);
}

/**
 * Checks `draft.groupOperation` against `chat` and plans its change. Reads the
 * actor's device (for its key) and the devices of added and removed users.
 */
export async function planGroupChange(
  store: Pick<Store, "getDevice" | "listUserDevices">,
  chat: ChatState,
  draft: MessageDraft,
): Promise<PlannedChange> {
  const signed = draft.groupOperation;
  if (signed === undefined) throw new Error("planGroupChange needs a group operation");
  if (chat.kind !== ChatKind.CHAT_KIND_GROUP) {
    throw new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "membership operations are for groups only");
  }
  try {
    const operation = decodeOperation(signed);
    if (operation.actorDeviceId !== draft.senderDeviceId || operation.actorUserId !== draft.senderUserId) {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_PERMISSION_DENIED,
        "a group operation is sent by the device that signed it",
      );
    }
    const device = await store.getDevice(operation.actorDeviceId);
    if (device?.userId !== operation.actorUserId) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, "the operation's actor device is unknown");
    }
    verifyDeviceSignature(device.identityKey, operationProof(signed.operation), signed.signature);
    const state = groupStateOf(chat);
    const next = nextGroupState(chat.chatId, state, signed.operation, operation);
    const before = new Set(state?.members ?? chat.memberUserIds);
    const after = new Set(next.members);
    const addedUserIds = next.members.filter((id) => !before.has(id));
    const removedUserIds = [...before].filter((id) => !after.has(id));
    const [addedLists, removedDeviceIds] = await Promise.all([
      Promise.all(addedUserIds.map((userId) => store.listUserDevices(userId))),
      devicesOf(store, removedUserIds),
    ]);
    // Every added user must exist: each has at least one device.
    const unknown = addedUserIds.filter((_, i) => (addedLists[i]?.length ?? 0) === 0);
    if (unknown.length > 0) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, `no user ${unknown.join(", ")}`);
    }
    const addedDeviceIds = addedLists.flat().map((d) => d.deviceId);
    return {
      operation,
      next,
      change: {
        previousHash: state === undefined ? new Uint8Array(0) : state.lastOperationHash,
        operationHash: next.lastOperationHash,
        record: {
          chatId: chat.chatId,
          kind: chat.kind,
          title: next.title,
          memberUserIds: next.members,
          createdByUserId: chat.createdByUserId,
          createdAtMs: chat.createdAtMs,
          adminUserIds: next.admins,
          epoch: next.epoch,
        },
        addedDeviceIds,
        addedUserIds,
        removedDeviceIds,
        removedUserIds,
      },
    };
  } catch (error) {
    if (error instanceof GroupOperationError) throw toRemessengerError(error);
    throw error;
  }
}
