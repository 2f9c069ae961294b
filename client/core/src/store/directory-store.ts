/**
 * The DirectoryStore port: a cache of the chats and contacts the server
 * described. Saving a chat or contact replaces the one with its id.
 */
import { type Chat, ChatKind } from "@remessenger/protocol";

export type ChatKindName = "direct" | "group";

export interface ChatSummary {
  chatId: string;
  kind: ChatKindName;
  title: string;
  memberUserIds: string[];
}

/** The stored summary of a chat as the server describes it. */
export function toChatSummary(chat: Chat): ChatSummary {
  return {
    chatId: chat.chatId,
    kind: chat.kind === ChatKind.CHAT_KIND_GROUP ? "group" : "direct",
    title: chat.title,
    memberUserIds: [...chat.memberUserIds],
  };
}

export interface ContactRecord {
  userId: string;
  displayName: string;
}

export interface DirectoryStore {
  saveChats(chats: readonly ChatSummary[]): Promise<void>;
  getChat(chatId: string): Promise<ChatSummary | undefined>;
  /** Chats known here: saved ones, and any chat a message arrived in. */
  hasChat(chatId: string): Promise<boolean>;
  /** Every saved chat (a device is in few enough chats to list them at once). */
  listChats(): Promise<ChatSummary[]>;
  saveContacts(contacts: readonly ContactRecord[]): Promise<void>;
  listContacts(): Promise<ContactRecord[]>;
}
