/**
 * Stores received messages: the receiver's storage half. This device's own
 * messages (pushed back) are stored with their content from the outbox;
 * messages from other devices are opened and stored with the end-to-end state
 * they moved by the E2E layer (GroupSessions.openAndStore, storeOperation),
 * which takes the E2E lock itself; this unit never does.
 *
 * Invariants:
 * - A message is stored with the state it moved in one transaction, or not
 *   at all (e2e/received-commits.ts).
 * - A message that does not open is stored with its reason (shown, never
 *   dropped, logged once); a group's key distribution is stored and never shown.
 */
import type { Message } from "@remessenger/protocol";
import type { Received } from "../e2e/received-commits.ts";
import type { OperationOutcome } from "../group/group-chain.ts";
import type { GroupSessions } from "../group/group-sessions.ts";
import type { Logger } from "../runtime/logger.ts";
import type { ClientStore, ReceivedMessage } from "../store/client-store.ts";

export type { Received } from "../e2e/received-commits.ts";

export interface MessageOpenerOptions {
  store: ClientStore;
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

  /** Opens and stores a message from another device with its ratchet step in one transaction (GroupSessions.openAndStore). */
  async sealed(message: Message, base: ReceivedMessage): Promise<Received> {
    const received = await this.options.groups.openAndStore(message, base);
    const { problem } = received.record;
    if (problem !== undefined && received.isNew) {
      this.options.logger.warn({ chatId: base.chatId, seq: base.seq, reason: problem }, "message not decryptable");
    }
    return received;
  }

  /**
   * A group's membership operation: verified and applied (catching up on
   * earlier ones first) and stored with its place in the sequence; a refused
   * one is stored with its reason and changes nothing (GroupSessions.storeOperation).
   */
  operation(message: Message, base: ReceivedMessage): Promise<{ result: OperationOutcome; isNew: boolean }> {
    return this.options.groups.storeOperation(message, base);
  }
}
