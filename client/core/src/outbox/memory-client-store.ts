/**
 * ClientStore in memory: for tests and for load generators that drive many
 * clients in one process. Nothing survives the process; otherwise it keeps
 * every invariant of the port (see client-store.ts) and passes its contract.
 * Records are copied in and out, so callers cannot change stored state by
 * mutating what they passed or got.
 */
import type {
  ChatSummary,
  ClientStore,
  ContactRecord,
  DeviceProfile,
  NewOutboxMessage,
  OutboxEntry,
  OutboxProblem,
  OutboxQuery,
  OutboxState,
  ReceivedMessage,
} from "./client-store.ts";

export class MemoryClientStore implements ClientStore {
  private profile: DeviceProfile | undefined;
  private readonly outbox = new Map<string, OutboxEntry>();
  private nextPosition = 1;
  /** Per chat, the highest seq any receipt from another user covered. */
  private readonly receiptThrough = new Map<string, number>();
  private readonly received = new Map<string, Map<number, ReceivedMessage>>();
  private readonly highest = new Map<string, number>();
  private readonly chats = new Map<string, ChatSummary>();
  private readonly contacts = new Map<string, ContactRecord>();

  getProfile(): Promise<DeviceProfile | undefined> {
    return Promise.resolve(this.profile === undefined ? undefined : { ...this.profile });
  }

  saveProfile(profile: DeviceProfile): Promise<void> {
    this.profile = { ...profile };
    return Promise.resolve();
  }

  addToOutbox(message: NewOutboxMessage): Promise<OutboxEntry> {
    if (this.outbox.has(message.messageId)) {
      return Promise.reject(new Error(`message ${message.messageId} is in the outbox already`));
    }
    const entry: OutboxEntry = {
      ...message,
      position: this.nextPosition++,
      state: "queued",
      seq: undefined,
      problem: undefined,
    };
    this.outbox.set(entry.messageId, entry);
    return Promise.resolve(copy(entry));
  }

  getOutboxEntry(messageId: string): Promise<OutboxEntry | undefined> {
    const entry = this.outbox.get(messageId);
    return Promise.resolve(entry && copy(entry));
  }

  nextQueued(chatId: string): Promise<OutboxEntry | undefined> {
    // Map iteration follows insertion, which is position order.
    for (const entry of this.outbox.values()) {
      if (entry.chatId === chatId && entry.state === "queued") return Promise.resolve(copy(entry));
    }
    return Promise.resolve(undefined);
  }

  chatsWithQueued(limit: number): Promise<string[]> {
    const chats = new Set<string>();
    for (const entry of this.outbox.values()) {
      if (chats.size >= limit) break;
      if (entry.state === "queued") chats.add(entry.chatId);
    }
    return Promise.resolve([...chats]);
  }

  listOutbox(query: OutboxQuery): Promise<OutboxEntry[]> {
    const out: OutboxEntry[] = [];
    for (const entry of this.outbox.values()) {
      if (out.length >= query.limit) break;
      if (query.states === undefined || query.states.includes(entry.state)) out.push(copy(entry));
    }
    return Promise.resolve(out);
  }

  countOutbox(state: OutboxState): Promise<number> {
    let count = 0;
    for (const entry of this.outbox.values()) if (entry.state === state) count++;
    return Promise.resolve(count);
  }

  markSent(messageId: string, seq: number): Promise<OutboxEntry | undefined> {
    const entry = this.outbox.get(messageId);
    if (entry?.state !== "queued") return Promise.resolve(undefined);
    entry.seq = seq;
    entry.problem = undefined;
    entry.state = seq <= (this.receiptThrough.get(entry.chatId) ?? 0) ? "delivered" : "sent";
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
    entry.state = "failed";
    entry.problem = { ...problem };
    return Promise.resolve(copy(entry));
  }

  applyReceipt(chatId: string, throughSeq: number): Promise<OutboxEntry[]> {
    if (throughSeq > (this.receiptThrough.get(chatId) ?? 0)) this.receiptThrough.set(chatId, throughSeq);
    const delivered: OutboxEntry[] = [];
    for (const entry of this.outbox.values()) {
      if (entry.chatId === chatId && entry.state === "sent" && entry.seq !== undefined && entry.seq <= throughSeq) {
        entry.state = "delivered";
        delivered.push(copy(entry));
      }
    }
    return Promise.resolve(delivered);
  }

  saveReceived(message: ReceivedMessage): Promise<boolean> {
    let chat = this.received.get(message.chatId);
    if (chat === undefined) {
      chat = new Map();
      this.received.set(message.chatId, chat);
    }
    if (chat.has(message.seq)) return Promise.resolve(false);
    chat.set(message.seq, { ...message });
    if (message.seq > (this.highest.get(message.chatId) ?? 0)) this.highest.set(message.chatId, message.seq);
    return Promise.resolve(true);
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
}

function copy(entry: OutboxEntry): OutboxEntry {
  return { ...entry, problem: entry.problem && { ...entry.problem } };
}
