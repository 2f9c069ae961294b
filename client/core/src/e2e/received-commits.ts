/**
 * The E2E layer's transactions with the timeline: a received message is
 * stored with the end-to-end state its opening moved (ratchet step, used
 * one-time prekey, accepted sender key, applied group operation), under the
 * E2E lock. GroupSessions calls these with how it opens; nothing outside the
 * E2E layer runs them (they take the lock).
 *
 * Invariants:
 * - A message is stored with the state it moved in one transaction, or not at
 *   all; a write that lost to another process on this profile is retried from
 *   a fresh read, and one that process already stored is not new.
 * - A message that does not open is stored with its reason (shown, never
 *   dropped); a group's key distribution is stored and never shown.
 */
import type { Content } from "@remessenger/protocol";
import type { E2eStateStore, E2eWrite, ReceivedMessage, TimelineStore } from "../store/client-store.ts";
import type { E2eLock } from "./e2e-lock.ts";
import { isRetryableStale, retryStale } from "./stale-retry.ts";

/** A message as stored. */
export interface Received {
  record: ReceivedMessage;
  /** False when another process on this profile stored (and showed) it first. */
  isNew: boolean;
  /** Why the session with the sender should be reset, if it should. */
  heal: string | undefined;
  /** A group's key distribution: stored, never shown. */
  isControl: boolean;
  /** A group message refused for lack of its sender's key of this epoch: ask the sender for it. */
  missingKeyEpoch?: number;
}

/** What opening a message from another device gave. */
export type OpenedMessage =
  | { kind: "content"; content: Content; writes: E2eWrite[] }
  | { kind: "undecryptable"; reason: string; detail: string; canHeal: boolean; missingKeyEpoch?: number }
  | { kind: "control" };

export type ReceivedCommitStore = TimelineStore & E2eStateStore;

/** Opens a message with `open` and stores it with its writes in one transaction. */
export function commitOpened(
  lock: E2eLock,
  store: ReceivedCommitStore,
  base: ReceivedMessage,
  open: () => Promise<OpenedMessage>,
): Promise<Received> {
  return lock.run(async () => {
    for (let attempt = 1; ; attempt += 1) {
      const opened = await retryStale(open);
      if (opened.kind === "control") {
        return { record: base, isNew: await store.saveReceived(base), heal: undefined, isControl: true };
      }
      if (opened.kind === "undecryptable") {
        if (await store.hasReceived(base.chatId, base.seq))
          return { record: base, isNew: false, heal: undefined, isControl: false };
        const record = { ...base, problem: `undecryptable: ${opened.reason} (${opened.detail})` };
        return {
          record,
          isNew: await store.saveReceived(record),
          heal: opened.canHeal ? opened.reason : undefined,
          isControl: false,
          ...(opened.missingKeyEpoch === undefined ? {} : { missingKeyEpoch: opened.missingKeyEpoch }),
        };
      }
      const record = { ...base, content: opened.content };
      try {
        const isNew = await store.saveReceived(record, opened.writes);
        return { record, isNew, heal: undefined, isControl: false };
      } catch (error) {
        if (!isRetryableStale(error, attempt)) throw error;
        if (await store.hasReceived(base.chatId, base.seq))
          return { record, isNew: false, heal: undefined, isControl: false };
      }
    }
  });
}

/** What checking a membership operation gave: applied with its writes, or refused with a reason. */
export type OperationResult =
  { kind: "applied"; writes: readonly E2eWrite[] } | { kind: "rejected"; reason: string; detail: string };

/**
 * A group's membership operation, checked with `receive` and stored with its
 * place in the sequence (and its writes when applied); a refused one is
 * stored with its reason and changes nothing.
 */
export function commitOperation<T extends OperationResult>(
  lock: E2eLock,
  store: ReceivedCommitStore,
  base: ReceivedMessage,
  receive: () => Promise<T>,
): Promise<{ result: T; isNew: boolean }> {
  return lock.run(async () => {
    for (let attempt = 1; ; attempt += 1) {
      const result = await retryStale(receive);
      const record =
        result.kind === "applied"
          ? base
          : { ...base, problem: `group operation refused: ${result.reason} (${result.detail})` };
      try {
        const isNew = await store.saveReceived(record, result.kind === "applied" ? result.writes : []);
        return { result, isNew };
      } catch (error) {
        if (!isRetryableStale(error, attempt)) throw error;
        if (await store.hasReceived(base.chatId, base.seq)) return { result, isNew: false };
      }
    }
  });
}
