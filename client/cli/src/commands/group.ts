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
  type GroupChange,
  type GroupChangeRequest,
  type Messenger,
  UnknownGroupError,
  isId,
} from "@remessenger/client-core";
import { GroupOperationError } from "@remessenger/protocol";
import { CliError, EXIT_USAGE, usageError } from "../cli-error.ts";
import { type CommandContext, REQUEST_TIMEOUT_MS, connectOrFail, withMessenger } from "../cli-session.ts";

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
  if (error instanceof GroupOperationError) {
    return new CliError(`refused: ${error.message}`, { exitCode: EXIT_USAGE, code: error.reason.toUpperCase() });
  }
  return error instanceof UnknownGroupError ? new CliError(error.message, { code: "NOT_FOUND" }) : error;
}

/** Runs a one-shot, connected group action (no subscription, the outbox left alone). */
function withGroupMessenger<T>(
  context: CommandContext,
  body: (messenger: Messenger, me: string) => Promise<T>,
): Promise<T> {
  return withMessenger(context, { subscribe: false, sendOutbox: false }, async (messenger, opened) => {
    await connectOrFail(context, messenger, opened);
    try {
      return await body(messenger, opened.profile.userId);
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
  await withGroupMessenger(context, async (messenger, me) => {
    if (members.includes(me)) throw usageError("you are in every group you create; name the other members");
    const chatId = await messenger.createGroup(options.name, members, {
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
  await withGroupMessenger(context, async (messenger) => {
    const change = await messenger.changeGroup(chatId, request, {
      timeoutMs: CHANGE_TIMEOUT_MS,
      signal: context.signal,
    });
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
  await withGroupMessenger(context, async (messenger) => {
    const state = await messenger.groupMembership(chatId, { signal: context.signal });
    const { verifiedSeq, refused } = state;
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
        serverSeq: state.serverSeq,
        refused,
      },
      lines.join("\n"),
    );
  });
}
