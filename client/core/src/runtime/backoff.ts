/**
 * Reconnect delays: exponential backoff with "equal jitter" — half of each
 * delay is fixed, half random — so a crowd of clients dropped together
 * spreads out instead of stampeding back, yet no client retries at once.
 * Pure: the random source is an input.
 */

export interface BackoffPolicy {
  /** Delay before the first retry (before jitter). */
  initialMs: number;
  /** Delays never exceed this. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 30_000 };

/**
 * The delay before retry number `attempt` (1 = the first retry after a
 * failure). `random` returns a number in [0, 1).
 */
export function backoffDelay(attempt: number, random: () => number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** exponent);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
