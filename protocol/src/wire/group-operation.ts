/**
 * A group's membership chain: the rules every side applies to a group
 * operation, in one place (the server imports it to enforce, every client to
 * check again). Pure: no keys, no storage; signatures are verified by the
 * caller, against the acting device's identity key, over `operationProof`.
 *
 * Invariants of a valid chain:
 * - It starts with one CREATE (epoch 1, previous hash all zero) whose actor
 *   is a member and becomes the only admin.
 * - Every later operation names the hash of the one before it, so the chain
 *   has one order and nothing can be left out or replayed elsewhere (the
 *   chat id is signed too).
 * - Only admins add, remove, promote, demote, rename and rotate; any member
 *   may leave, except the last admin while others remain; a group always
 *   keeps an admin while it has members.
 * - ADD, REMOVE, LEAVE and ROTATE start a new epoch (+1); the others keep it.
 * - `state_hash` is the hash of the state after the operation, so the signer
 *   commits to the whole membership, and two sides that disagree find out at
 *   the next operation.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, equalBytes } from "./bytes.ts";
import { isId } from "./ids.ts";
import { MAX_CHAT_TITLE_CHARS, MESSAGE_ID_BYTES } from "./limits.ts";
import { RemessengerError } from "./errors.ts";
import { ErrorCode, GroupOperation, GroupOperationKind, type SignedGroupOperation } from "./proto.ts";

/** Members a group may have. */
export const MAX_GROUP_MEMBERS = 10_000;
/** Users one operation may name (larger additions take several operations). */
export const MAX_USERS_PER_OPERATION = 1_000;
export const GROUP_HASH_BYTES = 32;
/** The previous hash of a CREATE. */
export const GENESIS_PREVIOUS_HASH = new Uint8Array(GROUP_HASH_BYTES);

export interface GroupState {
  chatId: string;
  title: string;
  /** Sorted, no repeats. */
  members: string[];
  /** Sorted, a subset of members. */
  admins: string[];
  epoch: number;
  /** Hash of the last operation applied (GENESIS_PREVIOUS_HASH before the first). */
  lastOperationHash: Uint8Array;
}

export type GroupOperationFailure =
  | "undecodable"
  | "wrong-chat"
  | "bad-users"
  | "not-admin"
  | "not-member"
  | "last-admin"
  | "too-many-members"
  | "does-not-follow"
  | "wrong-epoch"
  | "wrong-state"
  | "bad-signature";

/** Why an operation is not part of the chain: shown to the user, refused by the server. */
export class GroupOperationError extends RemessengerError {
  override readonly name = "GroupOperationError";
  readonly reason: GroupOperationFailure;
  constructor(reason: GroupOperationFailure, message: string) {
    super(groupOperationErrorCode(reason), message);
    this.reason = reason;
  }
}

/** The stable code of each refusal: who may not (PERMISSION_DENIED), who lost a race (GROUP_CHANGED). */
export function groupOperationErrorCode(reason: GroupOperationFailure): ErrorCode {
  switch (reason) {
    case "not-admin":
      return ErrorCode.ERROR_CODE_PERMISSION_DENIED;
    case "does-not-follow":
      return ErrorCode.ERROR_CODE_GROUP_CHANGED;
    case "bad-signature":
      return ErrorCode.ERROR_CODE_UNAUTHENTICATED;
    case "undecodable":
    case "wrong-chat":
    case "bad-users":
    case "not-member":
    case "last-admin":
    case "too-many-members":
    case "wrong-epoch":
    case "wrong-state":
      return ErrorCode.ERROR_CODE_INVALID_ARGUMENT;
  }
}

/** Re-exported for the callers that compare operation hashes with it (the server's chat actor). */
export { equalBytes };

const encoder = new TextEncoder();
const PROOF_PREFIX = encoder.encode("remessenger/v1/group-op\u0000");
const HASH_PREFIX = encoder.encode("remessenger/v1/group-op-hash\u0000");
const STATE_PREFIX = encoder.encode("remessenger/v1/group-state\u0000");

/** The bytes the acting device signs. */
export function operationProof(operation: Uint8Array): Uint8Array {
  return concat(PROOF_PREFIX, operation);
}

/** What the next operation names as `previous_hash`. */
export function operationHash(operation: Uint8Array): Uint8Array {
  return sha256(concat(HASH_PREFIX, operation));
}

/** The message id a group operation is sent with: from its hash, so sending it again is a duplicate. */
export function operationMessageId(operation: Uint8Array): Uint8Array {
  return operationHash(operation).subarray(0, MESSAGE_ID_BYTES);
}

/** Length-prefixed fields, so no title or id can shift the boundaries of another. */
function field(text: string): Uint8Array {
  const bytes = encoder.encode(text);
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

/** Hash of the membership a signer commits to (not the chain position). */
export function stateHash(state: Pick<GroupState, "chatId" | "title" | "members" | "admins" | "epoch">): Uint8Array {
  return sha256(
    concat(
      STATE_PREFIX,
      field(state.chatId),
      field(String(state.epoch)),
      field(state.title),
      field(String(state.members.length)),
      ...state.members.map(field),
      field(String(state.admins.length)),
      ...state.admins.map(field),
    ),
  );
}

/** Whether an operation of this kind starts a new epoch (new sender keys). */
export function startsEpoch(kind: GroupOperationKind): boolean {
  return (
    kind === GroupOperationKind.GROUP_OPERATION_KIND_CREATE ||
    kind === GroupOperationKind.GROUP_OPERATION_KIND_ADD ||
    kind === GroupOperationKind.GROUP_OPERATION_KIND_REMOVE ||
    kind === GroupOperationKind.GROUP_OPERATION_KIND_LEAVE ||
    kind === GroupOperationKind.GROUP_OPERATION_KIND_ROTATE
  );
}

/** The operation inside a signed one; throws GroupOperationError("undecodable"). */
export function decodeOperation(signed: SignedGroupOperation): GroupOperation {
  try {
    return GroupOperation.decode(signed.operation);
  } catch {
    throw new GroupOperationError("undecodable", "the group operation does not decode");
  }
}

function sortedUnique(ids: readonly string[]): string[] {
  return [...new Set(ids)].sort();
}

/** The membership after `operation` (fields only; the caller checks hashes). */
function applyKind(state: GroupState | undefined, op: GroupOperation): Omit<GroupState, "lastOperationHash"> {
  const fail = (reason: GroupOperationFailure, message: string): never => {
    throw new GroupOperationError(reason, message);
  };
  const users = op.userIds;
  if (users.length > MAX_USERS_PER_OPERATION)
    fail("bad-users", `at most ${MAX_USERS_PER_OPERATION} users per operation`);
  if (users.some((id) => !isId("user", id))) fail("bad-users", "the operation names something that is not a user id");
  if (users.join("\u0000") !== sortedUnique(users).join("\u0000"))
    fail("bad-users", "user ids must be sorted, once each");
  if (!isId("user", op.actorUserId) || !isId("device", op.actorDeviceId)) fail("bad-users", "no valid actor");

  if (op.kind === GroupOperationKind.GROUP_OPERATION_KIND_CREATE) {
    if (state !== undefined) fail("does-not-follow", "the group exists already");
    if (!users.includes(op.actorUserId)) fail("not-member", "the creator must be a member");
    if (users.length > MAX_GROUP_MEMBERS) fail("too-many-members", `a group has at most ${MAX_GROUP_MEMBERS} members`);
    if (op.title.length > MAX_CHAT_TITLE_CHARS) fail("bad-users", `title over ${MAX_CHAT_TITLE_CHARS} characters`);
    return { chatId: op.chatId, title: op.title, members: [...users], admins: [op.actorUserId], epoch: 1 };
  }
  if (state === undefined) return fail("does-not-follow", "the group has no CREATE before this operation");
  const members = new Set(state.members);
  const admins = new Set(state.admins);
  if (!members.has(op.actorUserId)) fail("not-member", `${op.actorUserId} is not a member of the group`);
  const isAdmin = admins.has(op.actorUserId);
  const needsAdmin = op.kind !== GroupOperationKind.GROUP_OPERATION_KIND_LEAVE;
  if (needsAdmin && !isAdmin) fail("not-admin", `${op.actorUserId} is not an admin of the group`);
  const needsUsers = (isWanted: boolean): void => {
    if (isWanted && users.length === 0) fail("bad-users", "the operation names no user");
    if (!isWanted && users.length > 0) fail("bad-users", "the operation names users it cannot act on");
  };
  let title = state.title;
  switch (op.kind) {
    case GroupOperationKind.GROUP_OPERATION_KIND_ADD:
      needsUsers(true);
      for (const id of users) {
        if (members.has(id)) fail("bad-users", `${id} is a member already`);
        members.add(id);
      }
      if (members.size > MAX_GROUP_MEMBERS)
        fail("too-many-members", `a group has at most ${MAX_GROUP_MEMBERS} members`);
      break;
    case GroupOperationKind.GROUP_OPERATION_KIND_REMOVE:
      needsUsers(true);
      for (const id of users) {
        if (id === op.actorUserId) fail("bad-users", "an admin leaves with LEAVE, not REMOVE");
        if (!members.has(id)) fail("not-member", `${id} is not a member`);
        members.delete(id);
        admins.delete(id);
      }
      break;
    case GroupOperationKind.GROUP_OPERATION_KIND_LEAVE:
      if (users.length !== 1 || users[0] !== op.actorUserId) fail("bad-users", "a member leaves only itself");
      if (isAdmin && admins.size === 1 && members.size > 1) {
        fail("last-admin", "the last admin cannot leave while others remain: promote someone first");
      }
      members.delete(op.actorUserId);
      admins.delete(op.actorUserId);
      break;
    case GroupOperationKind.GROUP_OPERATION_KIND_PROMOTE:
      needsUsers(true);
      for (const id of users) {
        if (!members.has(id)) fail("not-member", `${id} is not a member`);
        if (admins.has(id)) fail("bad-users", `${id} is an admin already`);
        admins.add(id);
      }
      break;
    case GroupOperationKind.GROUP_OPERATION_KIND_DEMOTE:
      needsUsers(true);
      for (const id of users) {
        if (!admins.has(id)) fail("bad-users", `${id} is not an admin`);
        admins.delete(id);
      }
      if (admins.size === 0) fail("last-admin", "a group keeps at least one admin");
      break;
    case GroupOperationKind.GROUP_OPERATION_KIND_RENAME:
      needsUsers(false);
      if (op.title.length > MAX_CHAT_TITLE_CHARS) fail("bad-users", `title over ${MAX_CHAT_TITLE_CHARS} characters`);
      title = op.title;
      break;
    case GroupOperationKind.GROUP_OPERATION_KIND_ROTATE:
      needsUsers(false);
      break;
    case GroupOperationKind.GROUP_OPERATION_KIND_UNSPECIFIED:
    default:
      fail("undecodable", `unknown group operation kind ${String(op.kind)}`);
  }
  return {
    chatId: state.chatId,
    title,
    members: [...members].sort(),
    admins: [...admins].sort(),
    epoch: state.epoch + (startsEpoch(op.kind) ? 1 : 0),
  };
}

/**
 * The group's state after `operation` (the encoded bytes, as signed), or a
 * GroupOperationError saying why it does not follow `state`. `state` is
 * undefined before the CREATE. The signature is the caller's to verify.
 */
export function nextGroupState(
  chatId: string,
  state: GroupState | undefined,
  operationBytes: Uint8Array,
  operation: GroupOperation,
): GroupState {
  if (operation.chatId !== chatId || (state !== undefined && state.chatId !== chatId)) {
    throw new GroupOperationError("wrong-chat", "the operation belongs to another chat");
  }
  const previous = state?.lastOperationHash ?? GENESIS_PREVIOUS_HASH;
  if (!equalBytes(operation.previousHash, previous)) {
    throw new GroupOperationError("does-not-follow", "the operation does not follow the group's last operation");
  }
  const next = applyKind(state, operation);
  if (operation.epoch !== next.epoch) {
    throw new GroupOperationError("wrong-epoch", `the operation says epoch ${operation.epoch}, expected ${next.epoch}`);
  }
  if (!equalBytes(operation.stateHash, stateHash(next))) {
    throw new GroupOperationError("wrong-state", "the operation's state hash does not match the membership it makes");
  }
  return { ...next, lastOperationHash: operationHash(operationBytes) };
}

export interface OperationDraft {
  kind: GroupOperationKind;
  userIds?: readonly string[];
  title?: string;
  actorUserId: string;
  actorDeviceId: string;
  createdAtMs: number;
}

/**
 * The operation an actor signs to move `state` (undefined: create `chatId`)
 * on; throws GroupOperationError when the rules refuse it. Returns the bytes
 * to sign and the state they lead to.
 */
export function draftOperation(
  chatId: string,
  state: GroupState | undefined,
  draft: OperationDraft,
): { operation: Uint8Array; next: GroupState } {
  const userIds =
    draft.kind === GroupOperationKind.GROUP_OPERATION_KIND_LEAVE
      ? [draft.actorUserId]
      : sortedUnique(draft.userIds ?? []);
  const base: GroupOperation = {
    chatId,
    kind: draft.kind,
    userIds,
    title: draft.title ?? "",
    epoch: 0,
    previousHash: state?.lastOperationHash ?? GENESIS_PREVIOUS_HASH,
    stateHash: new Uint8Array(0),
    actorUserId: draft.actorUserId,
    actorDeviceId: draft.actorDeviceId,
    createdAtMs: draft.createdAtMs,
  };
  const fields = applyKind(state, base);
  const operation = GroupOperation.encode({ ...base, epoch: fields.epoch, stateHash: stateHash(fields) }).finish();
  return { operation, next: { ...fields, lastOperationHash: operationHash(operation) } };
}

/** The operation's kind as a word for people and JSON lines ("added", "rotated"...). */
export function describeKind(kind: GroupOperationKind): string {
  switch (kind) {
    case GroupOperationKind.GROUP_OPERATION_KIND_CREATE:
      return "created";
    case GroupOperationKind.GROUP_OPERATION_KIND_ADD:
      return "added";
    case GroupOperationKind.GROUP_OPERATION_KIND_REMOVE:
      return "removed";
    case GroupOperationKind.GROUP_OPERATION_KIND_LEAVE:
      return "left";
    case GroupOperationKind.GROUP_OPERATION_KIND_PROMOTE:
      return "promoted";
    case GroupOperationKind.GROUP_OPERATION_KIND_DEMOTE:
      return "demoted";
    case GroupOperationKind.GROUP_OPERATION_KIND_RENAME:
      return "renamed";
    case GroupOperationKind.GROUP_OPERATION_KIND_ROTATE:
      return "rotated";
    case GroupOperationKind.GROUP_OPERATION_KIND_UNSPECIFIED:
    default:
      return "unknown";
  }
}

/** A group operation as a member received it (a Message with `group_operation`). */
export interface ReceivedOperation {
  seq: number;
  signed: SignedGroupOperation;
  /** Who the server says sent it: must be the operation's signer. */
  senderUserId: string;
  senderDeviceId: string;
}

export type OperationVerdict =
  | { seq: number; isAccepted: true; operation: GroupOperation; state: GroupState }
  | { seq: number; isAccepted: false; reason: GroupOperationFailure; message: string };

/**
 * A client's check of the operations it received, in seq order, on top of
 * the chain it trusts (`state`; undefined before the CREATE): each must be
 * sent by the device that signed it, carry a valid signature by that device's
 * identity key as this client knows it (`isSignedByActor`), and follow the
 * rules. A refused operation changes nothing: the state stays as it was, so
 * an operation the server forged (or let through) adds or removes no one.
 */
export async function checkReceivedOperations(
  chatId: string,
  state: GroupState | undefined,
  received: readonly ReceivedOperation[],
  isSignedByActor: (operation: GroupOperation, signed: SignedGroupOperation) => Promise<boolean>,
): Promise<{ state: GroupState | undefined; verdicts: OperationVerdict[] }> {
  const verdicts: OperationVerdict[] = [];
  let current = state;
  for (const entry of received) {
    try {
      const operation = decodeOperation(entry.signed);
      if (operation.actorUserId !== entry.senderUserId || operation.actorDeviceId !== entry.senderDeviceId) {
        throw new GroupOperationError("bad-signature", "the operation was sent by another device than its signer");
      }
      if (!(await isSignedByActor(operation, entry.signed))) {
        throw new GroupOperationError("bad-signature", `the signature is not ${operation.actorDeviceId}'s`);
      }
      current = nextGroupState(chatId, current, entry.signed.operation, operation);
      verdicts.push({ seq: entry.seq, isAccepted: true, operation, state: current });
    } catch (error) {
      if (!(error instanceof GroupOperationError)) throw error;
      verdicts.push({ seq: entry.seq, isAccepted: false, reason: error.reason, message: error.message });
    }
  }
  return { state: current, verdicts };
}
