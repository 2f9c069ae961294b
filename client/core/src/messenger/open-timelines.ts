/**
 * The timelines the messenger's screens hold open: each opened on its newest
 * page and handed out as a TimelineHandle, fed every outbox change and
 * received message while open, dropped on `close`.
 *
 * Invariants: at most MAX_OPEN_TIMELINES are open at once (more means
 * screens forgot to close theirs); a timeline whose first page failed to load
 * is never registered; an own message takes its outbox state.
 */
import type { ClientStore, OutboxEntry, ReceivedMessage } from "../store/client-store.ts";
import type { Observable } from "./observable.ts";
import { Timeline, type TimelineState } from "./timeline.ts";

/** A chat's timeline as handed to a UI: the window, paging, and `close` when the screen goes. */
export interface TimelineHandle {
  readonly chatId: string;
  readonly state: Observable<TimelineState>;
  loadOlder(): Promise<boolean>;
  loadNewer(): Promise<number>;
  close(): void;
}

/** Timelines open at once; more means screens forgot to close theirs. */
export const MAX_OPEN_TIMELINES = 100;

export class OpenTimelines {
  private readonly store: ClientStore;
  private readonly userId: string;
  private readonly pageSize: number;
  private readonly timelines = new Set<Timeline>();

  constructor(store: ClientStore, userId: string, pageSize: number) {
    this.store = store;
    this.userId = userId;
    this.pageSize = pageSize;
  }

  get isEmpty(): boolean {
    return this.timelines.size === 0;
  }

  /** A chat's timeline, opened on its newest page, updated live until closed. */
  async open(chatId: string): Promise<TimelineHandle> {
    if (this.timelines.size >= MAX_OPEN_TIMELINES) {
      throw new Error(`more than ${MAX_OPEN_TIMELINES} open timelines: close the ones no screen shows`);
    }
    const timeline = new Timeline(this.store, chatId, this.userId, this.pageSize);
    this.timelines.add(timeline);
    try {
      await timeline.open();
    } catch (error) {
      this.timelines.delete(timeline);
      throw error;
    }
    return {
      chatId,
      state: timeline.state,
      loadOlder: () => timeline.loadOlder(),
      loadNewer: () => timeline.loadNewer(),
      close: () => {
        this.timelines.delete(timeline);
      },
    };
  }

  outbox(entry: OutboxEntry): void {
    for (const timeline of this.timelines) timeline.outbox(entry);
  }

  /** A stored message into every open timeline; own messages take their outbox state. */
  async received(record: ReceivedMessage): Promise<void> {
    const own = record.senderUserId === this.userId ? await this.store.getOutboxEntry(record.messageId) : undefined;
    for (const timeline of this.timelines) timeline.received(record, own);
  }
}
