/**
 * Waiting for a session's first connection attempt: logged in, or failed
 * with the reason, or nothing within a deadline. For callers that should
 * answer fast rather than wait for retries (one-shot commands, a screen's
 * "offline" banner); the session keeps retrying either way.
 *
 * Invariant: the wait resolves exactly once and leaves no listener or timer
 * behind.
 */
import { type ConnectionStatus, isFinal, isLoggedIn } from "../connection/connection-state.ts";
import type { Clock } from "../runtime/clock.ts";
import type { Observable } from "./observable.ts";

export type FirstAttempt = { kind: "connected" } | { kind: "offline"; reason: string };

/** What a status says of the first attempt; undefined while it is still under way. */
export function attemptVerdict(status: ConnectionStatus): FirstAttempt | undefined {
  if (isLoggedIn(status.state)) return { kind: "connected" };
  if (status.state === "offline" || isFinal(status.state)) {
    return { kind: "offline", reason: status.lastFailure?.reason ?? status.state };
  }
  return undefined;
}

/** Resolves with the first verdict, "interrupted" when `signal` aborts, or a timeout reason after `timeoutMs`. */
export function firstAttempt(
  connection: Observable<ConnectionStatus>,
  clock: Clock,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<FirstAttempt> {
  const now = attemptVerdict(connection.value);
  if (now !== undefined) return Promise.resolve(now);
  return new Promise((resolve) => {
    const finish = (result: FirstAttempt): void => {
      cancelTimer();
      off();
      signal?.removeEventListener("abort", onAbort);
      resolve(result);
    };
    const onAbort = (): void => {
      finish({ kind: "offline", reason: "interrupted" });
    };
    const cancelTimer = clock.setTimer(() => {
      finish({ kind: "offline", reason: `no connection within ${timeoutMs} ms` });
    }, timeoutMs);
    const off = connection.subscribe((status) => {
      const result = attemptVerdict(status);
      if (result !== undefined) finish(result);
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
