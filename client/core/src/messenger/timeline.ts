/**
 * One chat's messages as a UI scrolls them: a window that opens on the
 * newest page, pages backward (`loadOlder`) and forward (`loadNewer`, to
 * catch up after a gap), and takes live updates (a message received, an
 * outbox row changing state). `mergeViews` is the pure part.
 *
 * Invariants: a message appears once (by message id; a later view of it
 * replaces the earlier, so an own message moves queued → sent → delivered in
 * place); views are ordered by seq, messages the server has not taken yet
 * last; control records never appear; the window holds at most
 * MAX_TIMELINE_VIEWS views (the oldest go, and can be paged in again).
 */
import type { ClientStore, OutboxEntry, ReceivedMessage } from "../store/client-store.ts";
import {
  type DisplayNames,
  type MessageView,
  compareViews,
  isShown,
  viewOfOutbox,
  viewOfReceived,
} from "./message-view.ts";
import { ObservableValue, type Observable } from "./observable.ts";

/** Views one timeline keeps; beyond it the oldest are dropped (paged in again by `loadOlder`). */
export const MAX_TIMELINE_VIEWS = 5_000;
/** Own messages of one chat the outbox is asked for at once. */
export const MAX_OWN_LOOKUP = 20_000;

export interface TimelineState {
  /** Oldest first. */
  messages: readonly MessageView[];
  /** Older messages are stored here (call `loadOlder`). */
  hasOlder: boolean;
}

/** Replaces views with the same message id and keeps the order (compareViews). */
export function mergeViews(current: readonly MessageView[], incoming: readonly MessageView[]): MessageView[] {
  const byId = new Map(current.map((v) => [v.messageId, v]));
  for (const view of incoming) {
    const before = byId.get(view.messageId);
    // A later outbox update without a seq (a problem noted) keeps the seq the message had.
    byId.set(view.messageId, before?.seq !== undefined && view.seq === undefined ? { ...view, seq: before.seq } : view);
  }
  return [...byId.values()].sort(compareViews);
}

export type TimelineStore = Pick<ClientStore, "listReceivedBefore" | "listReceived" | "listOutbox" | "listContacts">;

export class Timeline {
  private readonly value = new ObservableValue<TimelineState>({ messages: [], hasOlder: false });
  private names: DisplayNames = new Map();
  /** The lowest seq the window covers (0: the chat's start). */
  private lowSeq = 0;

  readonly chatId: string;
  private readonly store: TimelineStore;
  private readonly me: string;
  private readonly pageSize: number;

  constructor(store: TimelineStore, chatId: string, me: string, pageSize: number) {
    this.store = store;
    this.chatId = chatId;
    this.me = me;
    this.pageSize = pageSize;
  }

  /** The window: messages oldest first, and whether older ones can be paged in. */
  get state(): Observable<TimelineState> {
    return this.value;
  }

  /** Loads the newest page (and this device's messages the server has not taken yet). */
  async open(): Promise<void> {
    this.names = new Map((await this.store.listContacts()).map((c) => [c.userId, c.displayName]));
    const records = await this.store.listReceivedBefore(this.chatId, Number.MAX_SAFE_INTEGER, this.pageSize);
    await this.addPage(records, this.mayHaveOlder(records), Number.MAX_SAFE_INTEGER, true);
  }

  /** Pages one page backward; false when the chat's start is in the window already. */
  async loadOlder(): Promise<boolean> {
    if (!this.value.value.hasOlder) return false;
    const before = this.lowSeq;
    const records = await this.store.listReceivedBefore(this.chatId, before, this.pageSize);
    await this.addPage(records, this.mayHaveOlder(records), before, false);
    return true;
  }

  /** Pages forward from the newest message held: what arrived while nobody listened. Returns how many came. */
  async loadNewer(): Promise<number> {
    const newest = this.value.value.messages.reduce((max, v) => Math.max(max, v.seq ?? 0), 0);
    const records = await this.store.listReceived(this.chatId, newest, this.pageSize);
    const own = await this.ownEntries();
    this.apply(mergeViews(this.value.value.messages, this.viewsOf(records, own)), this.value.value.hasOlder);
    return records.length;
  }

  /** A message of this chat was received and stored (`own`: its outbox row when this device wrote it). */
  received(record: ReceivedMessage, own?: OutboxEntry): void {
    if (record.chatId !== this.chatId || !isShown(record)) return;
    this.apply(
      mergeViews(this.value.value.messages, [viewOfReceived(record, { me: this.me, names: this.names, own })]),
      this.value.value.hasOlder,
    );
  }

  /** An outbox row of this chat changed. */
  outbox(entry: OutboxEntry): void {
    if (entry.chatId !== this.chatId) return;
    this.apply(
      mergeViews(this.value.value.messages, [viewOfOutbox(entry, this.me, this.names)]),
      this.value.value.hasOlder,
    );
  }

  /** A full page may have older messages below it, unless it reaches seq 1 (a chat's seqs start there). */
  private mayHaveOlder(records: readonly ReceivedMessage[]): boolean {
    return records.length === this.pageSize && (records[0]?.seq ?? 0) > 1;
  }

  private async addPage(
    records: ReceivedMessage[],
    isFull: boolean,
    beforeSeq: number,
    withUnsent: boolean,
  ): Promise<void> {
    const low = isFull ? (records[0]?.seq ?? 0) : 0;
    const own = await this.ownEntries();
    const ownInRange = own.filter((e) => (e.seq === undefined ? withUnsent : e.seq >= low && e.seq < beforeSeq));
    const views = [...this.viewsOf(records, own), ...ownInRange.map((e) => viewOfOutbox(e, this.me, this.names))];
    this.lowSeq = low;
    this.apply(mergeViews(this.value.value.messages, views), isFull);
  }

  private viewsOf(records: readonly ReceivedMessage[], own: readonly OutboxEntry[]): MessageView[] {
    const ownById = new Map(own.map((e) => [e.messageId, e]));
    return records
      .filter(isShown)
      .map((r) => viewOfReceived(r, { me: this.me, names: this.names, own: ownById.get(r.messageId) }));
  }

  private ownEntries(): Promise<OutboxEntry[]> {
    return this.store.listOutbox({ chatId: this.chatId, limit: MAX_OWN_LOOKUP });
  }

  private apply(messages: MessageView[], hasOlder: boolean): void {
    if (messages.length <= MAX_TIMELINE_VIEWS) {
      this.value.set({ messages, hasOlder });
      return;
    }
    const kept = messages.slice(messages.length - MAX_TIMELINE_VIEWS);
    this.lowSeq = kept.find((v) => v.seq !== undefined)?.seq ?? this.lowSeq;
    this.value.set({ messages: kept, hasOlder: true });
  }
}
