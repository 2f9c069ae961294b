/**
 * Seals messages and sends queued ones: the OutboxSender's sender. A new
 * message is sealed once when it enters the outbox (or at its first send
 * when sessions must be fetched first), and sealed again only when the
 * server says the chat's devices changed (DEVICES_CHANGED) or the group
 * epoch it was sealed in has ended.
 *
 * Invariants:
 * - Every message is end-to-end encrypted; there is no plaintext path.
 * - A seal's ratchet steps commit with the outbox row, under the E2E lock,
 *   so retries send the same bytes and no ratchet moves twice for one
 *   message; a write that lost to another process on this profile is
 *   retried from a fresh read (MAX_STALE_RETRIES).
 * - A reseal replaces exactly the bytes that were refused; if another
 *   process replaced them first, its bytes are sent.
 * - Before a group message leaves, this device's sender key of its epoch
 *   reaches every member device.
 */
import {
  ChatKind,
  Content,
  DevicesChangedError,
  ErrorCode,
  RemessengerError,
  SendMessageRequest,
  type SendMessageResponse,
  equalBytes,
  messageIdToHex,
  newMessageId,
} from "@remessenger/protocol";
import { textOnlyRefusal } from "../connection/text-only.ts";
import type { TransportFactory } from "../connection/transport.ts";
import { IdentityChangedError, NeedsServerError } from "../e2e/pairwise-errors.ts";
import type { PairwiseSessions, Sealed } from "../e2e/pairwise-sessions.ts";
import type { GroupSessions } from "../group/group-sessions.ts";
import type { QueuedMessageSender } from "../outbox/outbox-sender.ts";
import type { Clock } from "../runtime/clock.ts";
import type { Logger } from "../runtime/logger.ts";
import {
  type ClientStore,
  type E2eWrite,
  type OutboxEntry,
  StaleE2eStateError,
  toChatSummary,
} from "../store/client-store.ts";
import type { ServerApi } from "./server-api.ts";
import { MAX_STALE_RETRIES, isRetryableStale } from "./stale-retry.ts";

/** A send refused with DEVICES_CHANGED is sealed again and resent at most this often in a row. */
export const MAX_RESEAL_ROUNDS = 3;

export interface SealerOptions {
  store: ClientStore;
  api: ServerApi;
  e2e: PairwiseSessions;
  groups: GroupSessions;
  /** The pipe in use decides what may be sent (the DNS tunnel carries text only). */
  transports: TransportFactory;
  clock: Clock;
  logger: Logger;
  /** Whether this session sends the outbox at all. */
  isSendingOutbox: boolean;
}

export class Sealer implements QueuedMessageSender {
  private readonly options: SealerOptions;

  constructor(options: SealerOptions) {
    this.options = options;
  }

  canSend(): boolean {
    return this.options.isSendingOutbox && this.options.api.isOpen;
  }

  /**
   * Seals and stores a message in one step when the sessions it needs are at
   * hand; otherwise stores it unsealed, and the first send seals it. A
   * changed identity refuses it (IdentityChangedError).
   */
  sealNew(chatId: string, content: Content): Promise<OutboxEntry> {
    const { store, e2e, clock } = this.options;
    const message = { messageId: messageIdToHex(newMessageId()), chatId, content, createdAtMs: clock.nowMs() };
    return e2e.exclusive(async () => {
      for (let attempt = 1; ; attempt += 1) {
        let sealed;
        try {
          sealed = await this.sealFor(chatId, message.messageId, content);
        } catch (error) {
          // A changed identity blocks sending: the message is refused, not queued.
          if (error instanceof IdentityChangedError) throw error;
          // Anything else (offline, no bundle yet, an unknown chat) queues it unsealed:
          // the first send seals it, or shows why it cannot be sent.
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

  /** Sends one queued message on the live connection, sealing (again) as needed; resolves with the server's seq. */
  async send(entry: OutboxEntry): Promise<SendMessageResponse> {
    const { api, logger } = this.options;
    if (!api.isOpen) throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "not connected");
    const refusal = textOnlyRefusal(this.options.transports.kind, entry.content);
    if (refusal !== undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, refusal);
    let sealed = entry.sealed ?? (await this.sealQueued(entry));
    sealed = await this.prepareGroupSend(entry, sealed);
    for (let round = 0; ; round += 1) {
      const request = SendMessageRequest.decode(sealed);
      if (request.chatId !== entry.chatId || messageIdToHex(request.messageId) !== entry.messageId) {
        throw new RemessengerError(
          ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
          `sealed payload of ${entry.messageId} is not its own`,
        );
      }
      try {
        return await api.sendMessage(request);
      } catch (error) {
        if (!(error instanceof DevicesChangedError)) throw error;
        if (round >= MAX_RESEAL_ROUNDS) {
          // The devices keep changing under us: keep the message queued and try again later.
          throw new RemessengerError(
            ErrorCode.ERROR_CODE_UNAVAILABLE,
            `the recipients' devices changed ${round + 1} times while sending; will retry`,
            { cause: error, retryAfterMs: 2_000 },
          );
        }
        logger.info(
          {
            chatId: entry.chatId,
            messageId: entry.messageId,
            missing: error.missingDeviceIds.length,
            stale: error.staleDeviceIds.length,
          },
          "the chat's devices changed: sealing for the new ones and sending again",
        );
        const previous = sealed;
        // Only for the devices that changed (see PairwiseSessions.reseal).
        sealed = await this.replaceSealed(entry, previous, () =>
          this.options.e2e.reseal(previous, entry.content, error),
        );
      }
    }
  }

  /** Whether `chatId` is a group (asks the server about a chat this device has not seen yet). */
  async isGroupChat(chatId: string): Promise<boolean> {
    const { groups, store, api } = this.options;
    if (await groups.isKnownGroup(chatId)) return true;
    const summary = await store.getChat(chatId);
    if (summary !== undefined) return summary.kind === "group";
    if (api.ready() === undefined) throw new NeedsServerError(`chat ${chatId} is not known here yet`);
    const { chat } = await api.request("getChat", { chatId });
    if (chat === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `chat ${chatId} not found`);
    await store.saveChats([toChatSummary(chat)]);
    return chat.kind === ChatKind.CHAT_KIND_GROUP;
  }

  /**
   * Seals a message for its chat: in a group once for every member with this
   * device's sender key (a session reset or a key request goes pairwise to
   * its one device); in a direct chat pairwise per device.
   */
  private async sealFor(chatId: string, messageIdHex: string, content: Content): Promise<Sealed> {
    const { e2e, groups, api, logger } = this.options;
    if (!(await this.isGroupChat(chatId))) return e2e.seal(chatId, messageIdHex, content);
    // Online, the chain is compared with the server's first (once per connection): a one-shot sender
    // that heard no pushes, or a device just added, seals in the group's current epoch.
    if (api.ready() !== undefined) {
      try {
        await groups.refresh(chatId);
      } catch (error) {
        if (!(error instanceof RemessengerError)) throw error;
        // Sealed with what this device knows; the chain is compared again before the message leaves.
        logger.debug({ chatId, reason: error.message }, "group chain not checked before sealing");
      }
    }
    const body = content.body;
    if (body?.$case !== "sessionReset" && body?.$case !== "senderKeyRequest") {
      return groups.seal(chatId, messageIdHex, content);
    }
    const members = (await groups.groupState(chatId))?.members ?? [];
    const target = body.value.targetDeviceId;
    return e2e.sealForMembers(chatId, messageIdHex, content, members, (id) => id === target);
  }

  /** Seals a message that entered the outbox unsealed (offline, no session yet); once, with its ratchet step. */
  private sealQueued(entry: OutboxEntry): Promise<Uint8Array> {
    const { store, e2e } = this.options;
    return e2e.exclusive(async () => {
      for (let attempt = 1; ; attempt += 1) {
        const current = await store.getOutboxEntry(entry.messageId);
        if (current?.sealed !== undefined) return current.sealed;
        const sealed = await this.sealFor(entry.chatId, entry.messageId, entry.content);
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
   * A group message about to leave: this device's sender key of its epoch
   * reaches every member device first, and a message of an epoch this device
   * knows has ended is sealed again in the current one. Direct chats pass
   * through.
   */
  private async prepareGroupSend(entry: OutboxEntry, sealed: Uint8Array): Promise<Uint8Array> {
    if (!(await this.isGroupChat(entry.chatId))) return sealed;
    const { e2e, groups, logger } = this.options;
    let current = sealed;
    for (let round = 0; round < MAX_RESEAL_ROUNDS; round += 1) {
      const verdict = await e2e.exclusive(() => groups.prepareSend(entry.chatId, current));
      if (verdict === "send") return current;
      logger.info(
        { chatId: entry.chatId, messageId: entry.messageId },
        "sealed in a group epoch that ended: sealing it again in the current one",
      );
      current = await this.replaceSealed(entry, current, () =>
        groups.seal(entry.chatId, entry.messageId, entry.content),
      );
    }
    throw new RemessengerError(
      ErrorCode.ERROR_CODE_UNAVAILABLE,
      `the group's epoch changed ${MAX_RESEAL_ROUNDS} times while sending; will retry`,
      { retryAfterMs: 2_000 },
    );
  }

  /**
   * Stores what `seal` makes in place of a queued message's sealed bytes,
   * only while they are still exactly `previous` (optimistic: another process
   * on this profile may have replaced them first; then its bytes are sent).
   */
  private replaceSealed(
    entry: OutboxEntry,
    previous: Uint8Array,
    seal: () => Promise<{ sealed: Uint8Array; writes: readonly E2eWrite[] }>,
  ): Promise<Uint8Array> {
    const { store, e2e } = this.options;
    return e2e.exclusive(async () => {
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
}
