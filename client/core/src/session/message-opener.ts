/**
 * Opens a received message and stores it in one step with the end-to-end
 * state it moved (ratchet step, accepted sender key, applied group
 * operation): the receiver's storage half, under the E2E lock.
 *
 * Invariants:
 * - A message is stored with the state it moved in one transaction, or not
 *   at all; a write that lost to another process on this profile is retried
 *   from a fresh read, and one that process already stored is not new.
 * - A message that does not open is stored with its reason (shown, never
 *   dropped); a group's key distribution is stored and never shown; a sender
 *   key is kept in the E2E state and the stored content carries no chain key.
 */
import type { Content, Message } from "@remessenger/protocol";
import type { PairwiseSessions } from "../e2e/pairwise-sessions.ts";
import type { OperationOutcome } from "../group/group-chain.ts";
import type { GroupSessions } from "../group/group-sessions.ts";
import type { Logger } from "../runtime/logger.ts";
import type { ClientStore, E2eWrite, ReceivedMessage } from "../store/client-store.ts";
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

type OpenedFor =
  | { kind: "content"; content: Content; writes: E2eWrite[] }
  | { kind: "undecryptable"; reason: string; detail: string; canHeal: boolean; missingKeyEpoch?: number }
  | { kind: "control" };

export interface MessageOpenerOptions {
  store: ClientStore;
  e2e: PairwiseSessions;
  groups: GroupSessions;
  logger: Logger;
}

export class MessageOpener {
  private readonly options: MessageOpenerOptions;

  constructor(options: MessageOpenerOptions) {
    this.options = options;
  }

  /** Our own message, pushed back: its content is in our outbox (a group key distribution never was). */
  async own(message: Message, base: ReceivedMessage): Promise<Received> {
    const { store, groups } = this.options;
    const entry = await store.getOutboxEntry(base.messageId);
    if (entry === undefined && message.payload.length === 0 && (await groups.isKnownGroup(base.chatId))) {
      return { record: base, isNew: await store.saveReceived(base), heal: undefined, isControl: true };
    }
    const record: ReceivedMessage =
      entry === undefined
        ? { ...base, problem: "sent by this device, but not in its outbox" }
        : { ...base, content: entry.content };
    return { record, isNew: await store.saveReceived(record), heal: undefined, isControl: false };
  }

  /** Opens and stores a message from another device with its ratchet step in one transaction. */
  sealed(message: Message, base: ReceivedMessage): Promise<Received> {
    const { store, e2e, logger } = this.options;
    return e2e.exclusive(async () => {
      for (let attempt = 1; ; attempt += 1) {
        const opened = await retryStale(() => this.openFor(message));
        if (opened.kind === "control") {
          return { record: base, isNew: await store.saveReceived(base), heal: undefined, isControl: true };
        }
        if (opened.kind === "undecryptable") {
          if (await store.hasReceived(base.chatId, base.seq))
            return { record: base, isNew: false, heal: undefined, isControl: false };
          const problem = `undecryptable: ${opened.reason} (${opened.detail})`;
          logger.warn({ chatId: base.chatId, seq: base.seq, reason: opened.reason }, "message not decryptable");
          const record = { ...base, problem };
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

  /**
   * A group's membership operation: verified and applied (catching up on
   * earlier ones first) and stored with its place in the sequence; a refused
   * one is stored with its reason and changes nothing.
   */
  operation(message: Message, base: ReceivedMessage): Promise<{ result: OperationOutcome; isNew: boolean }> {
    const { store, e2e, groups } = this.options;
    return e2e.exclusive(async () => {
      for (let attempt = 1; ; attempt += 1) {
        const result = await retryStale(() => groups.receiveOperation(message));
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

  /**
   * Opens a message from another device: a group envelope with the sender's
   * key, anything else pairwise. A sender key that arrives pairwise is kept
   * (its write goes with the message) and the stored content carries no
   * chain key; a group's pairwise message for other devices is a control
   * message for them.
   */
  private async openFor(message: Message): Promise<OpenedFor> {
    const { e2e, groups } = this.options;
    if (message.payload.length > 0) {
      const opened = await groups.open(message);
      if (opened.kind === "content") return { kind: "content", content: opened.content, writes: opened.writes };
      const { reason, detail, missingEpoch } = opened;
      return {
        kind: "undecryptable",
        reason,
        detail,
        canHeal: false,
        ...(missingEpoch === undefined ? {} : { missingKeyEpoch: missingEpoch }),
      };
    }
    const opened = await e2e.open(message);
    if (opened.kind === "undecryptable") {
      if (opened.reason === "not-for-this-device" && (await groups.isKnownGroup(message.chatId))) {
        return { kind: "control" };
      }
      return opened;
    }
    const body = opened.content.body;
    if (body?.$case !== "senderKey") return opened;
    const accepted = await groups.acceptDistribution(message, body.value);
    if (accepted.kind === "rejected") {
      return { kind: "undecryptable", reason: accepted.reason, detail: accepted.detail, canHeal: false };
    }
    const stripped: Content = {
      ...opened.content,
      body: { $case: "senderKey", value: { ...body.value, chainKey: new Uint8Array(0) } },
    };
    return { kind: "content", content: stripped, writes: [...opened.writes, ...accepted.writes] };
  }
}
