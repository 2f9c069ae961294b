/**
 * Time as an input. Everything in the core that waits, times out or retries
 * takes a Clock, so a test can run an hour of retries in a millisecond with a
 * manual clock, and the platform's timers stay at the edge.
 */
import { RemessengerError, ErrorCode } from "@remessenger/protocol";

export interface Clock {
  nowMs(): number;
  /** Calls `callback` once after `delayMs`; the returned function cancels it. */
  setTimer(callback: () => void, delayMs: number): () => void;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  setTimer(callback, delayMs) {
    const handle = setTimeout(callback, delayMs);
    return () => {
      clearTimeout(handle);
    };
  },
};

/** Resolves after `delayMs`, or early (without error) when `signal` aborts. */
export function pause(clock: Clock, delayMs: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      cancel();
      signal.removeEventListener("abort", done);
      resolve();
    };
    const cancel = clock.setTimer(done, delayMs);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * A signal that aborts when `parent` aborts or after `timeoutMs` on `clock`,
 * whichever comes first; its reason is then a DEADLINE_EXCEEDED error naming
 * `what`. Call `dispose` when done so the timer does not outlive the work.
 */
export function deadline(
  clock: Clock,
  timeoutMs: number,
  what: string,
  parent?: AbortSignal,
): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onParentAbort = (): void => {
    controller.abort(parent?.reason);
  };
  const cancel = clock.setTimer(() => {
    controller.abort(
      new RemessengerError(ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED, `${what} timed out after ${timeoutMs} ms`),
    );
  }, timeoutMs);
  if (parent?.aborted) onParentAbort();
  else parent?.addEventListener("abort", onParentAbort, { once: true });
  return {
    signal: controller.signal,
    dispose: () => {
      cancel();
      parent?.removeEventListener("abort", onParentAbort);
    },
  };
}

/** The reason a signal aborted, as an Error (AbortSignal reasons can be anything). */
export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(`aborted: ${String(reason)}`);
}

/**
 * Settles like `promise`, but rejects with the signal's reason as soon as it
 * aborts. The work behind `promise` is not cancelled by this; the caller owns it.
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(abortReason(signal));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
