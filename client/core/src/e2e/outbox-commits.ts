/**
 * The E2E layer's transactions with the outbox: a seal's ratchet or sender
 * key steps commit with the outbox row that holds the sealed bytes, under the
 * E2E lock. PairwiseSessions and GroupSessions call these with what they seal;
 * nothing outside the E2E layer runs them (they take the lock).
 *
 * Invariants:
 * - Sealed once: a queued message already sealed (by this or another process
 *   on this profile) is sent with those bytes, and no ratchet moves twice for
 *   one message.
 * - A write set that lost to another process is sealed again from a fresh
 *   read, at most MAX_STALE_RETRIES times.
 * - A reseal replaces exactly the bytes that were refused; if another process
 *   replaced them first, its bytes win.
 * - A new message that cannot be sealed now (offline, no bundle yet, an
 *   unknown chat: a RemessengerError) is queued unsealed and sealed at its
 *   first send; a changed identity (IdentityChangedError) refuses it.
 */
import { ErrorCode, RemessengerError, equalBytes } from "@remessenger/protocol";
import {
  type E2eStateStore,
  type E2eWrite,
  type NewOutboxMessage,
  type OutboxEntry,
  type OutboxStore,
  StaleE2eStateError,
} from "../store/client-store.ts";
import type { E2eLock } from "./e2e-lock.ts";
import { IdentityChangedError } from "./pairwise-errors.ts";
import { MAX_STALE_RETRIES, isRetryableStale } from "./stale-retry.ts";

/** What a seal makes: the encoded SendMessageRequest and the state writes that go with it. */
export interface SealedBytes {
  sealed: Uint8Array;
  writes: readonly E2eWrite[];
}

export type OutboxCommitStore = OutboxStore & E2eStateStore;
type Seal = () => Promise<SealedBytes>;

/** Seals a new message and stores it with its writes, or unsealed when it cannot be sealed now (see the header). */
export function commitNew(
  lock: E2eLock,
  store: OutboxCommitStore,
  message: NewOutboxMessage,
  seal: Seal,
): Promise<OutboxEntry> {
  return lock.run(async () => {
    for (let attempt = 1; ; attempt += 1) {
      let sealed;
      try {
        sealed = await seal();
      } catch (error) {
        // A changed identity blocks sending: the message is refused, not queued.
        if (error instanceof IdentityChangedError) throw error;
        // Anything else queues it unsealed: the first send seals it, or shows why it cannot be sent.
        if (error instanceof RemessengerError) return store.addToOutbox(message);
        throw error;
      }
      try {
        return await store.addToOutbox({ ...message, sealed: sealed.sealed }, sealed.writes);
      } catch (error) {
        if (!isRetryableStale(error, attempt)) throw error;
      }
    }
  });
}

/** Seals a message that entered the outbox unsealed; once, with its steps. Resolves with the bytes to send. */
export function commitQueued(
  lock: E2eLock,
  store: OutboxCommitStore,
  entry: OutboxEntry,
  seal: Seal,
): Promise<Uint8Array> {
  return lock.run(async () => {
    for (let attempt = 1; ; attempt += 1) {
      const current = await store.getOutboxEntry(entry.messageId);
      if (current?.sealed !== undefined) return current.sealed;
      const sealed = await seal();
      try {
        const stored = await store.sealOutboxEntry(entry.messageId, sealed.sealed, sealed.writes);
        if (stored?.sealed !== undefined) return stored.sealed;
      } catch (error) {
        if (!isRetryableStale(error, attempt)) throw error;
      }
      if (attempt >= MAX_STALE_RETRIES) throw new Error(`message ${entry.messageId} could not be sealed`);
    }
  });
}

/**
 * Stores what `seal` makes in place of a queued message's sealed bytes, only
 * while they are still exactly `previous` (optimistic: another process on
 * this profile may have replaced them first; then its bytes are sent).
 */
export function commitReplacement(
  lock: E2eLock,
  store: OutboxCommitStore,
  entry: OutboxEntry,
  previous: Uint8Array,
  seal: Seal,
): Promise<Uint8Array> {
  return lock.run(async () => {
    for (let attempt = 1; attempt <= MAX_STALE_RETRIES; attempt += 1) {
      const current = await store.getOutboxEntry(entry.messageId);
      if (current?.state !== "queued" || current.sealed === undefined) {
        throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, `message ${entry.messageId} left the queue`);
      }
      if (!equalBytes(current.sealed, previous)) return current.sealed;
      const resealed = await seal();
      try {
        const stored = await store.resealOutboxEntry(entry.messageId, previous, resealed.sealed, resealed.writes);
        if (stored?.sealed !== undefined) return stored.sealed;
      } catch (error) {
        if (!(error instanceof StaleE2eStateError)) throw error;
      }
    }
    throw new Error(`message ${entry.messageId} could not be sealed again`);
  });
}
