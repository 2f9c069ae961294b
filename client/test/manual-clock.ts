/**
 * A Clock for tests: time moves only when the test says so, so an hour of
 * retries runs in a millisecond and deadlines fire exactly when asked.
 */
import type { Clock } from "@remessenger/client-core";

interface Timer {
  id: number;
  atMs: number;
  callback: () => void;
}

export class ManualClock implements Clock {
  private now: number;
  private timers: Timer[] = [];
  private nextId = 1;

  constructor(startMs = 1_000_000) {
    this.now = startMs;
  }

  nowMs(): number {
    return this.now;
  }

  setTimer(callback: () => void, delayMs: number): () => void {
    const timer = { id: this.nextId++, atMs: this.now + Math.max(0, delayMs), callback };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t.id !== timer.id);
    };
  }

  get pendingTimers(): number {
    return this.timers.length;
  }

  /**
   * Moves time forward by `ms`, firing due timers in order, and lets promise
   * chains they start run (`settle`) after each one.
   */
  async advance(ms: number): Promise<void> {
    const target = this.now + ms;
    for (;;) {
      await settle();
      const due = this.timers.filter((t) => t.atMs <= target).sort((a, b) => a.atMs - b.atMs || a.id - b.id)[0];
      if (due === undefined) break;
      this.timers = this.timers.filter((t) => t.id !== due.id);
      this.now = due.atMs;
      due.callback();
    }
    this.now = target;
    await settle();
  }
}

/** Lets pending promise callbacks run (a turn of the event loop; no time passes on any clock). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
