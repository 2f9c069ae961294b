/**
 * The chat list a UI shows: every chat known here with its last message,
 * unread count and the delivery state of this user's last message, newest
 * activity first. `buildChatList` is the pure part; `ChatList` keeps it
 * live, rebuilding from the store when the messenger reports a change.
 *
 * Invariants: a control record is never a chat's last message; rebuilds are
 * coalesced (one in flight, at most one more queued), so a burst of messages
 * costs two store reads, not one per message; the value only changes when a
 * rebuild finished.
 */
import type { ChatActivity, ChatKindName, ChatSummary, ClientStore, OutboxEntry } from "../store/client-store.ts";
import {
  type DisplayNames,
  type MessageState,
  type MessageView,
  isShown,
  viewOfOutbox,
  viewOfReceived,
} from "./message-view.ts";
import { ObservableValue, type Observable } from "./observable.ts";

/** One row of the chat list. */
export interface ChatListItem {
  chatId: string;
  kind: ChatKindName;
  /** The group's title, or the other user's name (their id when no name is known) in a direct chat. */
  title: string;
  memberUserIds: string[];
  /** The newest message a user sees, own or received. */
  lastMessage: MessageView | undefined;
  /** Messages from others above the read mark. */
  unreadCount: number;
  /** The chat's read mark: messages through this seq were read here. */
  readThroughSeq: number;
  /** The state of this user's newest message here (queued, sent, delivered, failed). */
  ownDeliveryState: MessageState | undefined;
}

/** The newer of the last received record and the last outbox row. */
function lastMessageOf(activity: ChatActivity, me: string, names: DisplayNames): MessageView | undefined {
  const { lastOwn } = activity;
  const lastReceived =
    activity.lastReceived !== undefined && isShown(activity.lastReceived) ? activity.lastReceived : undefined;
  if (lastReceived === undefined) return lastOwn === undefined ? undefined : viewOfOutbox(lastOwn, me, names);
  const received = (own?: OutboxEntry): MessageView => viewOfReceived(lastReceived, { me, names, own });
  if (lastOwn === undefined) return received();
  if (lastOwn.messageId === lastReceived.messageId) return received(lastOwn);
  // An own message without a seq was written after everything the server gave (or failed there).
  const isOwnNewer =
    lastOwn.seq === undefined
      ? lastOwn.state === "queued" || lastOwn.createdAtMs >= lastReceived.serverTimeMs
      : lastOwn.seq > lastReceived.seq;
  return isOwnNewer ? viewOfOutbox(lastOwn, me, names) : received();
}

function titleOf(summary: ChatSummary | undefined, chatId: string, me: string, names: DisplayNames): string {
  if (summary === undefined) return chatId;
  if (summary.kind === "group") return summary.title;
  const other = summary.memberUserIds.find((id) => id !== me);
  if (other === undefined) return summary.title;
  const name = names.get(other);
  return name === undefined || name === "" ? other : name;
}

/** The chat list from the store's summaries and activity, newest activity first (chats without messages last). */
export function buildChatList(
  summaries: readonly ChatSummary[],
  activity: readonly ChatActivity[],
  context: { me: string; names: DisplayNames },
): ChatListItem[] {
  const { me, names } = context;
  const byId = new Map(summaries.map((s) => [s.chatId, s]));
  const items = activity.map((a): ChatListItem => {
    const summary = byId.get(a.chatId);
    return {
      chatId: a.chatId,
      kind: summary?.kind ?? "direct",
      title: titleOf(summary, a.chatId, me, names),
      memberUserIds: summary === undefined ? [] : [...summary.memberUserIds],
      lastMessage: lastMessageOf(a, me, names),
      unreadCount: a.unreadCount,
      readThroughSeq: a.readThroughSeq,
      ownDeliveryState: a.lastOwn?.state,
    };
  });
  const known = new Set(activity.map((a) => a.chatId));
  for (const summary of summaries) {
    if (known.has(summary.chatId)) continue;
    items.push({
      chatId: summary.chatId,
      kind: summary.kind,
      title: titleOf(summary, summary.chatId, me, names),
      memberUserIds: [...summary.memberUserIds],
      lastMessage: undefined,
      unreadCount: 0,
      readThroughSeq: 0,
      ownDeliveryState: undefined,
    });
  }
  const at = (item: ChatListItem): number => item.lastMessage?.sentAtMs ?? -1;
  return items.sort((a, b) => at(b) - at(a) || a.chatId.localeCompare(b.chatId));
}

/** The store reads the chat list needs. */
export type ChatListStore = Pick<ClientStore, "listChats" | "chatActivity" | "listContacts">;

/** The live chat list: `items` changes after every rebuild that `invalidate()` asked for. */
export class ChatList {
  private readonly value = new ObservableValue<readonly ChatListItem[]>([]);
  private running: Promise<void> | undefined;
  private isDirty = false;

  private readonly store: ChatListStore;
  private readonly me: string;
  private readonly onError: (error: unknown) => void;

  constructor(store: ChatListStore, me: string, onError: (error: unknown) => void) {
    this.store = store;
    this.me = me;
    this.onError = onError;
  }

  /** The chats, newest activity first. */
  get items(): Observable<readonly ChatListItem[]> {
    return this.value;
  }

  /** Rebuilds soon; calls while one runs fold into one more. Resolves when the value is current. */
  invalidate(): Promise<void> {
    this.isDirty = true;
    this.running ??= this.rebuildUntilClean();
    return this.running;
  }

  private async rebuildUntilClean(): Promise<void> {
    while (this.isDirty) {
      this.isDirty = false;
      try {
        const [summaries, activity, contacts] = await Promise.all([
          this.store.listChats(),
          this.store.chatActivity(),
          this.store.listContacts(),
        ]);
        const names = new Map(contacts.map((c) => [c.userId, c.displayName]));
        this.value.set(buildChatList(summaries, activity, { me: this.me, names }));
      } catch (error) {
        this.onError(error);
      }
    }
    // In the same turn as the last check, so a call after it starts a new rebuild.
    this.running = undefined;
  }
}
