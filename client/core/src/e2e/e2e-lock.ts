/**
 * The E2E lock: one device's end-to-end state is read, modified and written
 * by one step at a time. PairwiseSessions and GroupSessions share one
 * instance (the composition root makes it and gives it to both) and take it
 * inside their own methods; it never leaves client/core/src/e2e and
 * client/core/src/group (client/core/src/e2e-lock-boundary.test.ts), so a
 * step that must commit with a store row (a seal with its outbox row, an open
 * with its received row) is a method of theirs that does the commit itself.
 *
 * Invariants:
 * - Steps run in the order they asked, each after the previous one settled
 *   (a failed step does not block the next).
 * - Not reentrant: a method that holds it calls only the unlocked steps of
 *   the E2E layer, never another locked method (that would wait forever).
 */
export class E2eLock {
  private queue: Promise<unknown> = Promise.resolve();

  /** Runs `work` once every earlier step of this device finished. */
  run<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
