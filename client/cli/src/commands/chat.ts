/**
 * `remessenger chat create --with USER_ID...` and `remessenger chat list`.
 * One other user makes a direct chat (created once: asking again finds it),
 * several make a group. The list comes from the server and is cached in the
 * profile; offline, the cache is shown with a note.
 */
import { type ChatSummary, isId } from "@remessenger/client-core";
import { usageError } from "../cli-error.ts";
import {
  type CommandContext,
  REQUEST_TIMEOUT_MS,
  connectOrFail,
  firstAttempt,
  FIRST_ATTEMPT_TIMEOUT_MS,
  withMessenger,
} from "../cli-session.ts";

export async function chatCreateCommand(
  context: CommandContext,
  options: { with: string[]; title?: string },
): Promise<void> {
  const members = [...new Set(options.with)];
  for (const id of members) if (!isId("user", id)) throw usageError(`not a user id: ${id}`);
  await withMessenger(context, { subscribe: false, sendOutbox: false }, async (messenger, opened) => {
    if (members.includes(opened.profile.userId))
      throw usageError("you are in every chat you create; name the other members");
    await connectOrFail(context, messenger, opened);
    if (members.length > 1) {
      // A group starts with this device's signed CREATE (group create does the same).
      const chatId = await messenger.createGroup(options.title ?? "", members, {
        timeoutMs: 2 * REQUEST_TIMEOUT_MS,
        signal: context.signal,
      });
      context.output.print({ chatId, created: true }, chatId);
      return;
    }
    const [other] = members;
    if (other === undefined) throw usageError("name the other member of the chat");
    const chat = await messenger.openDirectChat(other, {
      ...(options.title === undefined ? {} : { title: options.title }),
      signal: context.signal,
    });
    context.output.print({ chatId: chat.chatId, created: chat.isCreated }, chat.chatId);
  });
}

export async function chatListCommand(context: CommandContext): Promise<void> {
  await withMessenger(context, { subscribe: false, sendOutbox: false }, async (messenger, opened) => {
    const attempt = await firstAttempt(context, messenger, FIRST_ATTEMPT_TIMEOUT_MS);
    let chats: ChatSummary[];
    let isCached = false;
    if (attempt.kind === "connected") {
      chats = await messenger.fetchChats({ signal: context.signal });
    } else {
      context.output.note(`offline (${attempt.reason}); showing the chats known here`);
      chats = await messenger.knownChats();
      isCached = true;
    }
    const me = opened.profile.userId;
    const contacts = new Map((await messenger.contacts()).map((c) => [c.userId, c.displayName]));
    const lines = chats.map((chat) => {
      const others = chat.memberUserIds.filter((id) => id !== me);
      const names = others.map((id) => (contacts.has(id) ? `${id} (${contacts.get(id) ?? ""})` : id)).join(", ");
      return `${chat.chatId}  ${chat.kind}  ${chat.title ? `"${chat.title}" ` : ""}with ${names || "nobody else"}`;
    });
    context.output.print(
      {
        chats: chats.map((c) => ({ chatId: c.chatId, kind: c.kind, title: c.title, members: c.memberUserIds })),
        isCached,
      },
      lines.length > 0 ? lines.join("\n") : "no chats yet",
    );
  });
}
