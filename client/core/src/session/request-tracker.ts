/**
 * Request ids and the requests waiting for their answer on one connection.
 *
 * Invariants: ids are uint32 and never 0 (0 means "no answer wanted"); an id
 * is never handed out while a request with it is pending, even after the
 * counter wraps; at most `limit` requests are pending at once, so a stuck
 * server cannot make the client grow without bound. Pure: deadlines are the
 * caller's timers.
 */

export const MAX_REQUEST_ID = 0xffff_ffff;

export class RequestTracker<T> {
  private readonly pending = new Map<number, T>();
  private readonly limit: number;
  private nextId: number;

  constructor(limit: number, firstId = 1) {
    this.limit = limit;
    this.nextId = firstId;
  }

  /** Whether another request fits. */
  get hasRoom(): boolean {
    return this.pending.size < this.limit;
  }

  get size(): number {
    return this.pending.size;
  }

  /** Files `entry` under a fresh id; throws when `limit` requests are pending. */
  add(entry: T): number {
    if (!this.hasRoom) throw new Error(`${this.limit} requests pending already`);
    let id = this.nextId;
    while (this.pending.has(id)) id = following(id);
    this.nextId = following(id);
    this.pending.set(id, entry);
    return id;
  }

  /** Removes and returns the request with this id, if it is pending. */
  take(id: number): T | undefined {
    const entry = this.pending.get(id);
    if (entry !== undefined) this.pending.delete(id);
    return entry;
  }

  /** Removes and returns every pending request (the connection closed). */
  takeAll(): T[] {
    const all = [...this.pending.values()];
    this.pending.clear();
    return all;
  }
}

function following(id: number): number {
  return id >= MAX_REQUEST_ID ? 1 : id + 1;
}
