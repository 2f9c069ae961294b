/**
 * `remessenger contacts`: the users you share a chat with, with their names.
 * Fetched from the server and cached; offline, the cache is shown with a note.
 */
import { type ContactRecord, toChatSummary } from "@remessenger/client-core";
import {
  type CommandContext,
  FIRST_ATTEMPT_TIMEOUT_MS,
  REQUEST_TIMEOUT_MS,
  firstAttempt,
  withSession,
} from "../cli-session.ts";

/** Names looked up per run; beyond this, ids are shown without names. */
const MAX_LOOKUPS = 500;

export async function contactsCommand(context: CommandContext): Promise<void> {
  await withSession(context, { subscribe: false, sendOutbox: false }, async (session, opened) => {
    const { store, profile } = opened;
    const attempt = await firstAttempt(session, FIRST_ATTEMPT_TIMEOUT_MS, context.signal);
    if (attempt.kind === "connected") {
      const request = { timeoutMs: REQUEST_TIMEOUT_MS, signal: context.signal };
      const { chats } = await session.request("listChats", {}, request);
      await store.saveChats(chats.map(toChatSummary));
      const known = new Map((await store.listContacts()).map((c) => [c.userId, c]));
      const ids = [...new Set(chats.flatMap((c) => c.memberUserIds))].filter((id) => id !== profile.userId);
      const fetched: ContactRecord[] = [];
      for (const userId of ids.slice(0, MAX_LOOKUPS)) {
        const { user } = await session.request("getUser", { userId }, request);
        if (user !== undefined) fetched.push({ userId, displayName: user.displayName });
        else if (!known.has(userId)) fetched.push({ userId, displayName: "" });
      }
      await store.saveContacts(fetched);
    } else {
      context.output.note(`offline (${attempt.reason}); showing the contacts known here`);
    }
    const chats = await store.listChats();
    const contacts = (await store.listContacts()).filter((c) => c.userId !== profile.userId);
    const rows = contacts.map((c) => ({
      userId: c.userId,
      displayName: c.displayName,
      chatIds: chats.filter((chat) => chat.memberUserIds.includes(c.userId)).map((chat) => chat.chatId),
    }));
    context.output.print(
      { contacts: rows },
      rows.length > 0 ? rows.map((r) => `${r.userId}  ${r.displayName}`).join("\n") : "no contacts yet",
    );
  });
}
