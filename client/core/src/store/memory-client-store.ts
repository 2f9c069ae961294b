/**
 * ClientStore in memory: for tests and for load generators that drive many
 * clients in one process. Nothing survives the process; otherwise it keeps
 * every invariant of the ports (see client-store.ts) and passes their
 * contract suites (client-store-contract.ts).
 * Records are copied in and out, so callers cannot change stored state by
 * mutating what they passed or got.
 *
 * The hot paths of a sending client are O(1) per message: per-chat indexes of
 * queued and sent messages (both in order) and a count per state, so a long
 * load run does not slow down as the outbox grows. A chat list's summary
 * (chatActivity) keeps each chat's last shown seq and newest outbox entry at
 * hand, and counts unread messages by a pass over the chat's messages.
 */
import {
  type ChatActivity,
  type ChatSummary,
  type ClientStore,
  type ContactRecord,
  type DeviceProfile,
  type E2eRecord,
  type E2eWrite,
  type NewOutboxMessage,
  type OutboxEntry,
  type OutboxProblem,
  type OutboxQuery,
  type OutboxState,
  type ReceivedMessage,
  StaleE2eStateError,
  isShownToUser,
} from "./client-store.ts";
import { equalBytes } from "@remessenger/protocol";

export class MemoryClientStore implements ClientStore {
  private profile: DeviceProfile | undefined;
  private readonly outbox = new Map<string, OutboxEntry>();
  /** Per chat, queued message ids in position order (Sets keep insertion order). */
  private readonly queuedByChat = new Map<string, Set<string>>();
  /** Per chat, sent (not yet delivered) message ids in seq order: one send in flight per chat. */
  private readonly sentByChat = new Map<string, Set<string>>();
  private readonly counts: Record<OutboxState, number> = { queued: 0, sent: 0, delivered: 0, failed: 0 };
  private nextPosition = 1;
  /** Per chat, the highest seq any receipt from another user covered. */
  private readonly receiptThrough = new Map<string, number>();
  private readonly received = new Map<string, Map<number, ReceivedMessage>>();
  private readonly highest = new Map<string, number>();
  /** Per chat, the highest seq of a received message a user sees. */
  private readonly lastShown = new Map<string, number>();
  /** Per chat, the id of this device's newest outbox entry. */
  private readonly lastOwn = new Map<string, string>();
  private readonly readMarks = new Map<string, number>();
  private readonly chats = new Map<string, ChatSummary>();
  private readonly contacts = new Map<string, ContactRecord>();
  private readonly e2e = new Map<string, E2eRecord>();

  getProfile(): Promise<DeviceProfile | undefined> {
    return Promise.resolve(this.profile === undefined ? undefined : { ...this.profile });
  }

  saveProfile(profile: DeviceProfile): Promise<void> {
    this.profile = { ...profile };
    return Promise.resolve();
  }

  addToOutbox(message: NewOutboxMessage, writes: readonly E2eWrite[] = []): Promise<OutboxEntry> {
    if (this.outbox.has(message.messageId)) {
      return Promise.reject(new Error(`message ${message.messageId} is in the outbox already`));
    }
    const stale = this.applyE2e(writes);
    if (stale !== undefined) return Promise.reject(stale);
    const entry: OutboxEntry = {
      ...message,
      position: this.nextPosition++,
      state: "queued",
      seq: undefined,
      problem: undefined,
      sealed: message.sealed?.slice(),
    };
    this.outbox.set(entry.messageId, entry);
    this.lastOwn.set(entry.chatId, entry.messageId);
    indexOf(this.queuedByChat, entry.chatId).add(entry.messageId);
    this.counts.queued += 1;
    return Promise.resolve(copy(entry));
  }

  sealOutboxEntry(
    messageId: string,
    sealed: Uint8Array,
    writes: readonly E2eWrite[],
  ): Promise<OutboxEntry | undefined> {
    const entry = this.outbox.get(messageId);
    if (entry?.state !== "queued" || entry.sealed !== undefined) return Promise.resolve(undefined);
    const stale = this.applyE2e(writes);
    if (stale !== undefined) return Promise.reject(stale);
    entry.sealed = sealed.slice();
    return Promise.resolve(copy(entry));
  }

  resealOutboxEntry(
    messageId: string,
    previous: Uint8Array,
    sealed: Uint8Array,
    writes: readonly E2eWrite[],
  ): Promise<OutboxEntry | undefined> {
    const entry = this.outbox.get(messageId);
    if (entry?.state !== "queued" || entry.sealed === undefined || !equalBytes(entry.sealed, previous)) {
      return Promise.resolve(undefined);
    }
    const stale = this.applyE2e(writes);
    if (stale !== undefined) return Promise.reject(stale);
    entry.sealed = sealed.slice();
    return Promise.resolve(copy(entry));
  }

  getOutboxEntry(messageId: string): Promise<OutboxEntry | undefined> {
    const entry = this.outbox.get(messageId);
    return Promise.resolve(entry && copy(entry));
  }

  nextQueued(chatId: string): Promise<OutboxEntry | undefined> {
    const [first] = this.queuedByChat.get(chatId) ?? [];
    const entry = first === undefined ? undefined : this.outbox.get(first);
    return Promise.resolve(entry && copy(entry));
  }

  chatsWithQueued(limit: number): Promise<string[]> {
    const heads: Array<{ chatId: string; position: number }> = [];
    for (const [chatId, ids] of this.queuedByChat) {
      const [first] = ids;
      const entry = first === undefined ? undefined : this.outbox.get(first);
      if (entry !== undefined) heads.push({ chatId, position: entry.position });
    }
    heads.sort((a, b) => a.position - b.position);
    return Promise.resolve(heads.slice(0, limit).map((h) => h.chatId));
  }

  listOutbox(query: OutboxQuery): Promise<OutboxEntry[]> {
    const out: OutboxEntry[] = [];
    for (const entry of this.outbox.values()) {
      if (out.length >= query.limit) break;
      const isWanted =
        (query.states === undefined || query.states.includes(entry.state)) &&
        (query.chatId === undefined || query.chatId === entry.chatId);
      if (isWanted) out.push(copy(entry));
    }
    return Promise.resolve(out);
  }

  countOutbox(state: OutboxState): Promise<number> {
    return Promise.resolve(this.counts[state]);
  }

  markSent(messageId: string, seq: number): Promise<OutboxEntry | undefined> {
    const entry = this.outbox.get(messageId);
    if (entry?.state !== "queued") return Promise.resolve(undefined);
    entry.seq = seq;
    entry.problem = undefined;
    const isCovered = seq <= (this.receiptThrough.get(entry.chatId) ?? 0);
    this.move(entry, isCovered ? "delivered" : "sent");
    return Promise.resolve(copy(entry));
  }

  markProblem(messageId: string, problem: OutboxProblem): Promise<OutboxEntry | undefined> {
    const entry = this.outbox.get(messageId);
    if (entry?.state !== "queued") return Promise.resolve(undefined);
    entry.problem = { ...problem };
    return Promise.resolve(copy(entry));
  }

  markFailed(messageId: string, problem: OutboxProblem): Promise<OutboxEntry | undefined> {
    const entry = this.outbox.get(messageId);
    if (entry?.state !== "queued") return Promise.resolve(undefined);
    entry.problem = { ...problem };
    this.move(entry, "failed");
    return Promise.resolve(copy(entry));
  }

  applyReceipt(chatId: string, throughSeq: number): Promise<OutboxEntry[]> {
    if (throughSeq > (this.receiptThrough.get(chatId) ?? 0)) this.receiptThrough.set(chatId, throughSeq);
    const delivered: OutboxEntry[] = [];
    for (const id of [...(this.sentByChat.get(chatId) ?? [])]) {
      const entry = this.outbox.get(id);
      if (entry?.seq === undefined || entry.seq > throughSeq) continue;
      this.move(entry, "delivered");
      delivered.push(copy(entry));
    }
    return Promise.resolve(delivered);
  }

  saveReceived(message: ReceivedMessage, writes: readonly E2eWrite[] = []): Promise<boolean> {
    const chat = this.received.get(message.chatId) ?? new Map<number, ReceivedMessage>();
    if (chat.has(message.seq)) return Promise.resolve(false);
    const stale = this.applyE2e(writes);
    if (stale !== undefined) return Promise.reject(stale);
    // Only a stored message makes its chat known (hasChat, chatActivity), never a refused one.
    this.received.set(message.chatId, chat);
    chat.set(message.seq, { ...message });
    if (message.seq > (this.highest.get(message.chatId) ?? 0)) this.highest.set(message.chatId, message.seq);
    if (isShownToUser(message) && message.seq > (this.lastShown.get(message.chatId) ?? 0)) {
      this.lastShown.set(message.chatId, message.seq);
    }
    return Promise.resolve(true);
  }

  hasReceived(chatId: string, seq: number): Promise<boolean> {
    return Promise.resolve(this.received.get(chatId)?.has(seq) === true);
  }

  readE2e(keys: readonly string[]): Promise<Map<string, E2eRecord>> {
    const out = new Map<string, E2eRecord>();
    for (const key of keys) {
      const record = this.e2e.get(key);
      if (record !== undefined) out.set(key, { version: record.version, value: record.value.slice() });
    }
    return Promise.resolve(out);
  }

  listE2eKeys(prefix: string): Promise<string[]> {
    return Promise.resolve([...this.e2e.keys()].filter((k) => k.startsWith(prefix)).sort());
  }

  writeE2e(writes: readonly E2eWrite[]): Promise<void> {
    const stale = this.applyE2e(writes);
    return stale === undefined ? Promise.resolve() : Promise.reject(stale);
  }

  highestReceivedSeqs(): Promise<Map<string, number>> {
    return Promise.resolve(new Map(this.highest));
  }

  listReceived(chatId: string, afterSeq: number, limit: number): Promise<ReceivedMessage[]> {
    const chat = this.received.get(chatId) ?? new Map<number, ReceivedMessage>();
    const messages = [...chat.values()]
      .filter((m) => m.seq > afterSeq)
      .sort((a, b) => a.seq - b.seq)
      .slice(0, limit)
      .map((m) => ({ ...m }));
    return Promise.resolve(messages);
  }

  listReceivedBefore(chatId: string, beforeSeq: number, limit: number): Promise<ReceivedMessage[]> {
    const chat = this.received.get(chatId) ?? new Map<number, ReceivedMessage>();
    const messages = [...chat.values()]
      .filter((m) => m.seq < beforeSeq)
      .sort((a, b) => a.seq - b.seq)
      .slice(-limit)
      .map((m) => ({ ...m }));
    return Promise.resolve(limit > 0 ? messages : []);
  }

  markRead(chatId: string, throughSeq: number): Promise<boolean> {
    if (throughSeq <= (this.readMarks.get(chatId) ?? 0)) return Promise.resolve(false);
    this.readMarks.set(chatId, throughSeq);
    return Promise.resolve(true);
  }

  chatActivity(): Promise<ChatActivity[]> {
    const me = this.profile?.userId;
    const chatIds = new Set([...this.chats.keys(), ...this.received.keys(), ...this.lastOwn.keys()]);
    const out: ChatActivity[] = [];
    for (const chatId of [...chatIds].sort()) {
      const received = this.received.get(chatId) ?? new Map<number, ReceivedMessage>();
      const readThroughSeq = this.readMarks.get(chatId) ?? 0;
      let unreadCount = 0;
      for (const m of received.values()) {
        if (m.seq > readThroughSeq && m.senderUserId !== me && isShownToUser(m)) unreadCount += 1;
      }
      const shownSeq = this.lastShown.get(chatId);
      const lastReceived = shownSeq === undefined ? undefined : received.get(shownSeq);
      const ownId = this.lastOwn.get(chatId);
      const lastOwn = ownId === undefined ? undefined : this.outbox.get(ownId);
      out.push({
        chatId,
        lastReceived: lastReceived && { ...lastReceived },
        lastOwn: lastOwn && copy(lastOwn),
        unreadCount,
        readThroughSeq,
      });
    }
    return Promise.resolve(out);
  }

  saveChats(chats: readonly ChatSummary[]): Promise<void> {
    for (const chat of chats) this.chats.set(chat.chatId, { ...chat, memberUserIds: [...chat.memberUserIds] });
    return Promise.resolve();
  }

  getChat(chatId: string): Promise<ChatSummary | undefined> {
    const chat = this.chats.get(chatId);
    return Promise.resolve(chat && { ...chat, memberUserIds: [...chat.memberUserIds] });
  }

  hasChat(chatId: string): Promise<boolean> {
    return Promise.resolve(this.chats.has(chatId) || this.received.has(chatId));
  }

  listChats(): Promise<ChatSummary[]> {
    return Promise.resolve([...this.chats.values()].map((c) => ({ ...c, memberUserIds: [...c.memberUserIds] })));
  }

  saveContacts(contacts: readonly ContactRecord[]): Promise<void> {
    for (const contact of contacts) this.contacts.set(contact.userId, { ...contact });
    return Promise.resolve();
  }

  listContacts(): Promise<ContactRecord[]> {
    return Promise.resolve([...this.contacts.values()].map((c) => ({ ...c })));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** All or nothing: every version is checked before anything changes; a stale write is returned, not applied. */
  private applyE2e(writes: readonly E2eWrite[]): StaleE2eStateError | undefined {
    for (const write of writes) {
      if ((this.e2e.get(write.key)?.version ?? 0) !== write.expectedVersion) return new StaleE2eStateError(write.key);
    }
    for (const write of writes) {
      if (write.value === undefined) this.e2e.delete(write.key);
      else this.e2e.set(write.key, { version: write.expectedVersion + 1, value: write.value.slice() });
    }
    return undefined;
  }

  /** Changes an entry's state and keeps the indexes and counts in step. */
  private move(entry: OutboxEntry, to: OutboxState): void {
    const from = entry.state;
    this.counts[from] -= 1;
    this.counts[to] += 1;
    entry.state = to;
    for (const [state, index] of [
      ["queued", this.queuedByChat],
      ["sent", this.sentByChat],
    ] as const) {
      if (from === state) {
        const ids = index.get(entry.chatId);
        ids?.delete(entry.messageId);
        if (ids?.size === 0) index.delete(entry.chatId);
      }
      if (to === state) indexOf(index, entry.chatId).add(entry.messageId);
    }
  }
}

function indexOf(index: Map<string, Set<string>>, chatId: string): Set<string> {
  let ids = index.get(chatId);
  if (ids === undefined) {
    ids = new Set();
    index.set(chatId, ids);
  }
  return ids;
}

function copy(entry: OutboxEntry): OutboxEntry {
  return { ...entry, problem: entry.problem && { ...entry.problem }, sealed: entry.sealed?.slice() };
}
