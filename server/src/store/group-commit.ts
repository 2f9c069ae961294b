/**
 * Group commit: many callers' writes share one durable commit.
 *
 * Operations submitted in the same event-loop turn, or while the previous commit
 * is still running, go into the next commit together. Each caller's promise
 * settles only after the commit that carried its operation finished, with that
 * operation's own result: one operation failing does not fail its neighbours,
 * while a failed commit fails every operation in it.
 *
 * Invariants: at most one commit runs at a time; operations commit in
 * submission order; the queue is bounded (`maxPendingWeight`), beyond which
 * submissions are refused with UNAVAILABLE instead of buffering without limit.
 */
import { RemessengerError, ErrorCode } from "@remessenger/protocol";

export type Settlement<R> = { ok: true; value: R } | { ok: false; error: unknown };

export interface GroupCommitOptions<Op> {
  /** Commits `ops` and reports each one's outcome, one to one and in order. */
  commit(ops: readonly Op[]): Promise<Settlement<unknown>[]>;
  /** Relative cost of an operation (e.g. messages in an append); at least 1. */
  weigh(op: Op): number;
  /** A commit stops taking operations once it carries this much weight. */
  maxBatchWeight: number;
  /** Weight queued and not yet committed beyond which submissions are refused. */
  maxPendingWeight: number;
}

export interface GroupCommitStats {
  /** Commits started. */
  commits: number;
  /** Operations carried by those commits. */
  ops: number;
}

interface Pending<Op> {
  op: Op;
  weight: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export class GroupCommit<Op> {
  readonly stats: GroupCommitStats = { commits: 0, ops: 0 };
  private readonly options: GroupCommitOptions<Op>;
  private queue: Pending<Op>[] = [];
  private pendingWeight = 0;
  private isScheduled = false;
  private running: Promise<void> | undefined;
  private isClosed = false;

  constructor(options: GroupCommitOptions<Op>) {
    this.options = options;
  }

  /** Queues `op` for the next commit; settles after that commit finished. */
  submit(op: Op): Promise<unknown> {
    if (this.isClosed) {
      return Promise.reject(new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "store is closed"));
    }
    const weight = Math.max(1, this.options.weigh(op));
    if (this.pendingWeight > 0 && this.pendingWeight + weight > this.options.maxPendingWeight) {
      return Promise.reject(
        new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "store write queue is full", { retryAfterMs: 100 }),
      );
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ op, weight, resolve, reject });
      this.pendingWeight += weight;
      this.schedule();
    });
  }

  /** Refuses new operations and waits until everything queued has committed. */
  async close(): Promise<void> {
    this.isClosed = true;
    while (this.running !== undefined || this.queue.length > 0) {
      if (this.running === undefined) this.flush();
      await this.running;
    }
  }

  private schedule(): void {
    if (this.isScheduled || this.running !== undefined) return;
    this.isScheduled = true;
    // setImmediate, not a microtask: it runs after every I/O callback of this
    // turn, so requests from many sockets read together share one commit.
    setImmediate(() => {
      this.isScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.running !== undefined || this.queue.length === 0) return;
    const batch = this.takeBatch();
    this.stats.commits += 1;
    this.stats.ops += batch.length;
    this.running = this.runCommit(batch).finally(() => {
      this.running = undefined;
      if (this.queue.length > 0) this.schedule();
    });
  }

  private takeBatch(): Pending<Op>[] {
    let weight = 0;
    let count = 0;
    for (const pending of this.queue) {
      if (count > 0 && weight + pending.weight > this.options.maxBatchWeight) break;
      weight += pending.weight;
      count += 1;
    }
    this.pendingWeight -= weight;
    return this.queue.splice(0, count);
  }

  private async runCommit(batch: Pending<Op>[]): Promise<void> {
    let settlements: Settlement<unknown>[];
    try {
      settlements = await this.options.commit(batch.map((pending) => pending.op));
      if (settlements.length !== batch.length) {
        throw new Error(`commit reported ${settlements.length} outcomes for ${batch.length} operations`);
      }
    } catch (error) {
      for (const pending of batch) pending.reject(error);
      return;
    }
    batch.forEach((pending, i) => {
      const settlement = settlements[i];
      if (settlement === undefined) pending.reject(new Error("commit reported no outcome"));
      else if (settlement.ok) pending.resolve(settlement.value);
      else pending.reject(settlement.error);
    });
  }
}
