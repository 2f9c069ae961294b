/**
 * Hands bus events to this node's listeners in slices of at most
 * FANOUT_SLICE users per event-loop turn. A message to a 10,000-member group
 * would otherwise hold the event loop while every member's connection writes
 * it, and every other chat on the node (answers, acks, pushes) would wait that
 * long; in slices they interleave.
 *
 * Invariants: events reach each user in the order they were handed over
 * (one FIFO for all events); an event for at most FANOUT_SLICE users with
 * nothing queued is delivered at once, synchronously, as before slicing.
 */

/** Users an event is delivered to in one event-loop turn. */
export const FANOUT_SLICE = 512;

interface Queued<E> {
  userIds: readonly string[];
  /** How many of userIds were delivered already. */
  at: number;
  event: E;
}

export class SlicedDelivery<E> {
  private readonly listeners: ReadonlyMap<string, ReadonlySet<(event: E) => void>>;
  private readonly queue: Array<Queued<E>> = [];
  private isScheduled = false;

  /** Delivers to `listeners` (per user id; read at delivery, so late subscribers and leavers count). */
  constructor(listeners: ReadonlyMap<string, ReadonlySet<(event: E) => void>>) {
    this.listeners = listeners;
  }

  /** Delivers `event` to the listeners of `userIds`, now or in later turns, after everything queued before it. */
  hand(userIds: readonly string[], event: E): void {
    if (this.queue.length === 0 && userIds.length <= FANOUT_SLICE) {
      this.deliver(userIds, event);
      return;
    }
    this.queue.push({ userIds, at: 0, event });
    this.schedule();
  }

  /** Events (or parts of them) waiting for a later turn, for tests and metrics. */
  get queued(): number {
    return this.queue.length;
  }

  private deliver(userIds: readonly string[], event: E): void {
    for (const userId of userIds) {
      const set = this.listeners.get(userId);
      if (set === undefined) continue;
      for (const listener of set) listener(event);
    }
  }

  private schedule(): void {
    if (this.isScheduled) return;
    this.isScheduled = true;
    setImmediate(() => {
      this.isScheduled = false;
      this.runSlice();
    });
  }

  private runSlice(): void {
    let budget = FANOUT_SLICE;
    while (budget > 0) {
      const head = this.queue[0];
      if (head === undefined) return;
      const slice = head.userIds.slice(head.at, head.at + budget);
      head.at += slice.length;
      budget -= slice.length;
      if (head.at >= head.userIds.length) this.queue.shift();
      // After the bookkeeping: a listener that publishes again queues behind what is left.
      this.deliver(slice, head.event);
    }
    if (this.queue.length > 0) this.schedule();
  }
}
