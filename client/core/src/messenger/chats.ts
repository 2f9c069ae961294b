/**
 * The server's chat directory as the messenger uses it: the chats this user
 * is in (cached in the store, so the list shows offline), one chat looked up,
 * and a direct chat made (or found: the server makes one per pair of users).
 *
 * Invariant: every chat the server describes is saved to the store before it
 * is returned, so a later offline read sees it.
 */
import { ChatKind } from "@remessenger/protocol";
import type { WaitOptions } from "../session/client-session.ts";
import { type ChatSummary, type ClientStore, toChatSummary } from "../store/client-store.ts";
import type { MessengerSession } from "./messenger-session.ts";

export type ChatsSession = Pick<MessengerSession, "request">;
export type ChatsStore = Pick<ClientStore, "saveChats">;

/** The chats this user is in, as the server has them now. */
export async function fetchChats(
  session: ChatsSession,
  store: ChatsStore,
  options: WaitOptions,
): Promise<ChatSummary[]> {
  const { chats } = await session.request("listChats", {}, options);
  const summaries = chats.map(toChatSummary);
  await store.saveChats(summaries);
  return summaries;
}

/** One chat; rejects with the server's error (NOT_FOUND, PERMISSION_DENIED) when it is not this user's. */
export async function fetchChat(
  session: ChatsSession,
  store: ChatsStore,
  chatId: string,
  options: WaitOptions,
): Promise<ChatSummary | undefined> {
  const { chat } = await session.request("getChat", { chatId }, options);
  if (chat === undefined) return undefined;
  const summary = toChatSummary(chat);
  await store.saveChats([summary]);
  return summary;
}

/** The result of asking for a direct chat. */
export interface DirectChat {
  chatId: string;
  /** False when the chat existed already. */
  isCreated: boolean;
}

/** The direct chat with `userId`: made now, or the one that exists. */
export async function openDirectChat(
  session: ChatsSession,
  store: ChatsStore,
  userId: string,
  title: string,
  options: WaitOptions,
): Promise<DirectChat> {
  const { chat, created } = await session.request(
    "createChat",
    { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [userId], title },
    options,
  );
  if (chat === undefined) throw new Error("the server answered without the chat");
  await store.saveChats([toChatSummary(chat)]);
  return { chatId: chat.chatId, isCreated: created };
}
