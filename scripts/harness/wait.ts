/**
 * Waiting for events in tests: every wait has a timeout and says what it was
 * waiting for when it fails. No sleeps.
 */
import type { Observable, TypedEmitter } from "@remessenger/client-core";

export function waitForEvent<Events extends object, K extends keyof Events>(
  emitter: TypedEmitter<Events>,
  event: K,
  predicate: (value: Events[K]) => boolean,
  timeoutMs = 15_000,
  what = String(event),
): Promise<Events[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const off = emitter.on(event, (value) => {
      if (!predicate(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** Polls an async condition until it holds; for state that has no event (another process's store). */
export async function waitUntil(
  condition: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
  what = "a condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Resolves with the observable's value once `predicate` holds (now or later); rejects after `timeoutMs`. */
export function waitForValue<T>(
  observable: Observable<T>,
  predicate: (value: T) => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<T> {
  if (predicate(observable.value)) return Promise.resolve(observable.value);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(
        new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(observable.value)}`,
        ),
      );
    }, timeoutMs);
    const off = observable.subscribe((value) => {
      if (!predicate(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}
