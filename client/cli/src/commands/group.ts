/**
 * `remessenger group ...`: create a group and change its membership, as
 * signed operations of this device (client/core/src/group/group-admin.ts):
 *
 *   group create --name NAME --members ID,ID   prints the chat id ({"chatId"})
 *   group add|remove|promote|demote CHAT USER  an admin's change
 *   group rename CHAT TITLE, group rotate CHAT  an admin's change (rotate: a new epoch)
 *   group leave CHAT                           any member
 *   group members CHAT                         the membership this device verified
 *
 * The rules (only admins change membership) are checked here before anything
 * is sent, by the server again, and by every member on receipt. `members`
 * shows the chain as this device checked it, signature by signature, against
 * the server's head: an operation the server holds but this device refuses
 * (forged, or by a non-admin) is listed with its reason and changes nothing.
 */
import {
  type ClientSession,
  type GroupChange,
  type GroupChangeRequest,
  isId,
  messageIdToHex,
} from "@remessenger/client-core";
import { equalBytes, GroupOperationError, operationHash, type Message, type GroupState } from "@remessenger/protocol";
import { CliError, EXIT_USAGE, usageError } from "../cli-error.ts";
import { type CommandContext, REQUEST_TIMEOUT_MS, connectOrFail, withSession } from "../cli-session.ts";

/** What one-shot group commands give a change (drafting, sending, catching up). */
const CHANGE_TIMEOUT_MS = 2 * REQUEST_TIMEOUT_MS;

export type MemberChangeKind = "add" | "remove" | "promote" | "demote";

function requireChat(chatId: string): void {
  if (!isId("chat", chatId)) throw usageError(`not a chat id: ${chatId}`);
}

function requireUser(userId: string): void {
  if (!isId("user", userId)) throw usageError(`not a user id: ${userId}`);
}

/** The rules' refusal (not an admin, not a member...) as the user sees it: bad input, with the reason. */
function refusal(error: unknown): unknown {
  return error instanceof GroupOperationError
    ? new CliError(`refused: ${error.message}`, { exitCode: EXIT_USAGE, code: error.reason.toUpperCase() })
    : error;
}

/** Runs a one-shot, connected group action (no subscription, the outbox left alone). */
function withGroupSession<T>(
  context: CommandContext,
  body: (session: ClientSession, me: string) => Promise<T>,
): Promise<T> {
  return withSession(context, { subscribe: false, sendOutbox: false }, async (session, opened) => {
    await connectOrFail(context, session, opened);
    try {
      return await body(session, opened.profile.userId);
    } catch (error) {
      throw refusal(error);
    }
  });
}

function changeLine(change: GroupChange): string {
  const users = change.userIds.length > 0 ? ` ${change.userIds.join(", ")}` : "";
  const epoch = change.isRotation ? `, epoch ${change.epoch}` : "";
  return `${change.chatId} #${change.seq}: ${change.change}${users}${epoch} (${change.members.length} members)`;
}

function changeJson(change: GroupChange): object {
  return {
    chatId: change.chatId,
    seq: change.seq,
    change: change.change,
    users: change.userIds,
    title: change.title,
    epoch: change.epoch,
    rotation: change.isRotation,
    members: change.members,
    admins: change.admins,
  };
}

export async function groupCreateCommand(
  context: CommandContext,
  options: { name: string; members: string },
): Promise<void> {
  const members = [
    ...new Set(
      options.members
        .split(",")
        .map((id) => id.trim())
        .filter((id) => id.length > 0),
    ),
  ];
  for (const id of members) requireUser(id);
  await withGroupSession(context, async (session, me) => {
    if (members.includes(me)) throw usageError("you are in every group you create; name the other members");
    const chatId = await session.createGroup(options.name, members, {
      timeoutMs: CHANGE_TIMEOUT_MS,
      signal: context.signal,
    });
    context.output.print({ chatId }, chatId);
  });
}

/** add, remove, promote, demote, rename, rotate, leave: one signed operation. */
export async function groupChangeCommand(
  context: CommandContext,
  chatId: string,
  request: GroupChangeRequest,
): Promise<void> {
  requireChat(chatId);
  if ("userIds" in request) for (const id of request.userIds) requireUser(id);
  await withGroupSession(context, async (session) => {
    const change = await session.changeGroup(chatId, request, { timeoutMs: CHANGE_TIMEOUT_MS, signal: context.signal });
    context.output.print(changeJson(change), changeLine(change));
  });
}

/**
 * The membership this device verified, after catching up with the server; an
 * operation after it that the server holds and this device refuses is listed
 * with its reason.
 */
export async function groupMembersCommand(context: CommandContext, chatId: string): Promise<void> {
  requireChat(chatId);
  await withGroupSession(context, async (session) => {
    await session.refreshGroup(chatId, true);
    const state: GroupState | undefined = await session.groupState(chatId);
    if (state === undefined) throw new CliError(`no verified group ${chatId} here`, { code: "NOT_FOUND" });
    const operations = await allOperations(session, chatId, context.signal);
    // Where the verified chain ends in the server's sequence; the operation after it is one this device refuses.
    const headAt = operations.findIndex(
      (m) =>
        m.groupOperation !== undefined &&
        equalBytes(operationHash(m.groupOperation.operation), state.lastOperationHash),
    );
    const verifiedSeq = operations[headAt]?.seq ?? 0;
    const serverHead = operations.at(-1)?.seq ?? 0;
    const refused: Array<{ seq: number; messageId: string; reason: string; detail: string }> = [];
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
    const lines = [
      `${chatId} "${state.title}", epoch ${state.epoch}, ${state.members.length} members (verified through #${verifiedSeq}):`,
      ...state.members.map((id) => `  ${id}${state.admins.includes(id) ? " (admin)" : ""}`),
      ...refused.map((r) => `refused #${r.seq}: ${r.reason} (${r.detail}); it changes nothing here`),
    ];
    context.output.print(
      {
        chatId,
        title: state.title,
        epoch: state.epoch,
        members: state.members,
        admins: state.admins,
        verifiedSeq,
        serverSeq: serverHead,
        refused,
      },
      lines.join("\n"),
    );
  });
}

/** Operations fetched per request, and at most this many pages (a group's chain is short: changes, not messages). */
const OPERATIONS_PAGE = 500;
const MAX_OPERATION_PAGES = 100;

/** The group's whole chain as the server holds it, seq ascending. */
async function allOperations(session: ClientSession, chatId: string, signal: AbortSignal): Promise<Message[]> {
  const all: Message[] = [];
  for (let page = 0; page < MAX_OPERATION_PAGES; page += 1) {
    const { operations } = await session.request(
      "getGroupOperations",
      { chatId, afterSeq: all.at(-1)?.seq ?? 0, limit: OPERATIONS_PAGE },
      { timeoutMs: REQUEST_TIMEOUT_MS, signal },
    );
    all.push(...operations);
    if (operations.length < OPERATIONS_PAGE) return all;
  }
  throw new CliError(`group ${chatId} has more than ${OPERATIONS_PAGE * MAX_OPERATION_PAGES} operations`);
}
