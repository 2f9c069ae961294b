/**
 * Contacts: the users this user shares a chat with, with their display
 * names, fetched from the server and cached in the store so they show
 * offline.
 *
 * Invariants: this user is never their own contact; at most MAX_LOOKUPS
 * names are asked per refresh (beyond, ids show without names); a user the
 * server no longer describes keeps the name known here.
 */
import type { WaitOptions } from "../session/client-session.ts";
import type { ClientStore, ContactRecord } from "../store/client-store.ts";
import { fetchChats } from "./chats.ts";
import type { MessengerSession } from "./messenger-session.ts";

/** Names looked up per refresh; beyond this, ids are shown without names. */
export const MAX_LOOKUPS = 500;

/** A user this user shares chats with. */
export interface Contact {
  userId: string;
  /** Empty when no name is known. */
  displayName: string;
  /** The chats shared with them. */
  chatIds: string[];
}

export type ContactsStore = Pick<ClientStore, "saveChats" | "listChats" | "listContacts" | "saveContacts">;

/** Fetches the chats and the names of everyone in them, and caches both. */
export async function refreshContacts(
  session: Pick<MessengerSession, "request">,
  store: ContactsStore,
  me: string,
  options: WaitOptions,
): Promise<void> {
  const chats = await fetchChats(session, store, options);
  const known = new Set((await store.listContacts()).map((c) => c.userId));
  const ids = [...new Set(chats.flatMap((c) => c.memberUserIds))].filter((id) => id !== me);
  const fetched: ContactRecord[] = [];
  for (const userId of ids.slice(0, MAX_LOOKUPS)) {
    const { user } = await session.request("getUser", { userId }, options);
    if (user !== undefined) fetched.push({ userId, displayName: user.displayName });
    else if (!known.has(userId)) fetched.push({ userId, displayName: "" });
  }
  await store.saveContacts(fetched);
}

/** The contacts known here, with the chats shared with each. */
export async function listContacts(
  store: Pick<ClientStore, "listChats" | "listContacts">,
  me: string,
): Promise<Contact[]> {
  const chats = await store.listChats();
  return (await store.listContacts())
    .filter((c) => c.userId !== me)
    .map((c) => ({
      userId: c.userId,
      displayName: c.displayName,
      chatIds: chats.filter((chat) => chat.memberUserIds.includes(c.userId)).map((chat) => chat.chatId),
    }));
}
