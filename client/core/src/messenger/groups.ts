/**
 * A group's membership as this device verified it, set against the chain
 * the server holds: which operation the verified state ends at, and whether
 * the operation after it is one this device refuses (forged, or by a
 * non-admin), with the reason. Creating and changing groups are the
 * session's own signed operations (MessengerSession.createGroup/changeGroup).
 *
 * Invariant: the refused operation is checked, never applied (its writes are
 * dropped); the chain is read in pages, bounded by MAX_OPERATION_PAGES.
 */
import {
  equalBytes,
  type Message,
  operationHash,
  messageIdToHex,
  ErrorCode,
  RemessengerError,
} from "@remessenger/protocol";
import type { WaitOptions } from "../session/client-session.ts";
import type { MessengerSession } from "./messenger-session.ts";

/** Operations fetched per request, and at most this many pages (a chain is changes, not messages). */
export const OPERATIONS_PAGE = 500;
export const MAX_OPERATION_PAGES = 100;

/** An operation the server holds that this device refuses. */
export interface RefusedOperation {
  seq: number;
  /** 32 hex digits. */
  messageId: string;
  reason: string;
  detail: string;
}

/** A group as this device verified it. */
export interface GroupMembership {
  chatId: string;
  title: string;
  epoch: number;
  members: string[];
  admins: string[];
  /** The chat seq of the last operation this device verified (0: none found on the server). */
  verifiedSeq: number;
  /** The chat seq of the server's last operation. */
  serverSeq: number;
  refused: RefusedOperation[];
}

export type GroupsSession = Pick<MessengerSession, "request" | "refreshGroup" | "groupState" | "receiveGroupOperation">;

/** Thrown when this device holds no verified state of the group. */
export class UnknownGroupError extends RemessengerError {
  override readonly name = "UnknownGroupError";
  readonly chatId: string;
  constructor(chatId: string) {
    super(ErrorCode.ERROR_CODE_NOT_FOUND, `no verified group ${chatId} here`);
    this.chatId = chatId;
  }
}

/** Catches up with the server's chain, then reports the verified membership and any refused next operation. */
export async function groupMembership(
  session: GroupsSession,
  chatId: string,
  options: WaitOptions,
): Promise<GroupMembership> {
  await session.refreshGroup(chatId, true);
  const state = await session.groupState(chatId);
  if (state === undefined) throw new UnknownGroupError(chatId);
  const operations = await allOperations(session, chatId, options);
  const headAt = operations.findIndex(
    (m) =>
      m.groupOperation !== undefined && equalBytes(operationHash(m.groupOperation.operation), state.lastOperationHash),
  );
  const refused: RefusedOperation[] = [];
  const next = operations[headAt + 1];
  if (next !== undefined) {
    const outcome = await session.receiveGroupOperation(next);
    if (outcome.kind === "rejected") {
      refused.push({
        seq: next.seq,
        messageId: messageIdToHex(next.messageId),
        reason: outcome.reason,
        detail: outcome.detail,
      });
    }
  }
  return {
    chatId,
    title: state.title,
    epoch: state.epoch,
    members: [...state.members],
    admins: [...state.admins],
    verifiedSeq: operations[headAt]?.seq ?? 0,
    serverSeq: operations.at(-1)?.seq ?? 0,
    refused,
  };
}

/** The group's whole chain as the server holds it, seq ascending. */
async function allOperations(
  session: Pick<MessengerSession, "request">,
  chatId: string,
  options: WaitOptions,
): Promise<Message[]> {
  const all: Message[] = [];
  for (let page = 0; page < MAX_OPERATION_PAGES; page += 1) {
    const { operations } = await session.request(
      "getGroupOperations",
      { chatId, afterSeq: all.at(-1)?.seq ?? 0, limit: OPERATIONS_PAGE },
      options,
    );
    all.push(...operations);
    if (operations.length < OPERATIONS_PAGE) return all;
  }
  throw new Error(`group ${chatId} has more than ${OPERATIONS_PAGE * MAX_OPERATION_PAGES} operations`);
}
