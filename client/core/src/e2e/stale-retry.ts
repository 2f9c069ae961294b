/**
 * The retry rule for optimistic end-to-end state writes: another process on
 * this profile (a CLI command next to a listener) may move a record this
 * process read, and the store then refuses the write with
 * StaleE2eStateError. The work is run again from a fresh read, a bounded
 * number of times.
 */
import { StaleE2eStateError } from "../store/client-store.ts";

/** Optimistic E2E state writes retried this often when another process moved the state. */
export const MAX_STALE_RETRIES = 8;

/** Whether a failed attempt `attempt` (1-based) may be tried again. */
export function isRetryableStale(error: unknown, attempt: number): boolean {
  return error instanceof StaleE2eStateError && attempt < MAX_STALE_RETRIES;
}

/**
 * Runs `work` again when another process on this profile moved an
 * end-to-end record it wrote along the way (a device list refreshed by a
 * concurrent `send`), at most MAX_STALE_RETRIES times.
 */
export async function retryStale<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await work();
    } catch (error) {
      if (!isRetryableStale(error, attempt)) throw error;
    }
  }
}
