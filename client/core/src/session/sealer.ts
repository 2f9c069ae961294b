/**
 * Seals messages and sends queued ones: the OutboxSender's sender. A new
 * message is sealed once when it enters the outbox (or at its first send
 * when sessions must be fetched first), and sealed again only when the
 * server says the chat's devices changed (DEVICES_CHANGED) or the group
 * epoch it was sealed in has ended.
 *
 * Invariants:
 * - Every message is end-to-end encrypted; there is no plaintext path.
 * - A seal's ratchet steps commit with the outbox row, inside the E2E layer
 *   (PairwiseSessions / GroupSessions `sealIntoOutbox`, `sealQueued`,
 *   `resealForDevices`, `readyToSend`; e2e/outbox-commits.ts), so retries
 *   send the same bytes and no ratchet moves twice for one message. This
 *   unit decides which layer seals (direct or group chat) and never takes
 *   the E2E lock.
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
  messageIdToHex,
  newMessageId,
} from "@remessenger/protocol";
import { textOnlyRefusal } from "../connection/text-only.ts";
import type { TransportFactory } from "../connection/transport.ts";
import { NeedsServerError } from "../e2e/pairwise-errors.ts";
import type { PairwiseSessions } from "../e2e/pairwise-sessions.ts";
import type { GroupSessions } from "../group/group-sessions.ts";
import type { QueuedMessageSender } from "../outbox/outbox-sender.ts";
import type { Clock } from "../runtime/clock.ts";
import type { Logger } from "../runtime/logger.ts";
import { type ClientStore, type OutboxEntry, toChatSummary } from "../store/client-store.ts";
import type { ServerApi } from "./server-api.ts";

/** A send refused with DEVICES_CHANGED is sealed again and resent at most this often in a row (an ended group epoch: MAX_EPOCH_RESEALS). */
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
  async sealNew(chatId: string, content: Content): Promise<OutboxEntry> {
    const { store, e2e, groups, clock } = this.options;
    const message = { messageId: messageIdToHex(newMessageId()), chatId, content, createdAtMs: clock.nowMs() };
    let isGroup;
    try {
      isGroup = await this.isGroupChat(chatId);
    } catch (error) {
      // Offline and the chat unknown here: queued unsealed, the first send seals it (or shows why it cannot).
      if (error instanceof RemessengerError) return store.addToOutbox(message);
      throw error;
    }
    return isGroup ? groups.sealIntoOutbox(message, this.isOnline) : e2e.sealIntoOutbox(message);
  }

  /** Sends one queued message on the live connection, sealing (again) as needed; resolves with the server's seq. */
  async send(entry: OutboxEntry): Promise<SendMessageResponse> {
    const { api, logger } = this.options;
    if (!api.isOpen) throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "not connected");
    const refusal = textOnlyRefusal(this.options.transports.kind, entry.content);
    if (refusal !== undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, refusal);
    const { e2e, groups } = this.options;
    const isGroup = await this.isGroupChat(entry.chatId);
    let sealed = entry.sealed ?? (await (isGroup ? groups.sealQueued(entry, this.isOnline) : e2e.sealQueued(entry)));
    // A group message: this device's sender key of its epoch reaches every member device first,
    // and a message of an epoch this device knows has ended is sealed again in the current one.
    if (isGroup) {
      sealed = await groups.readyToSend(entry, sealed, () => {
        logger.info(
          { chatId: entry.chatId, messageId: entry.messageId },
          "sealed in a group epoch that ended: sealing it again in the current one",
        );
      });
    }
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
        // Only for the devices that changed (see PairwiseSessions.reseal).
        sealed = await e2e.resealForDevices(entry, sealed, error);
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

  /** Whether the server can be asked now (a group's chain is compared with it before sealing). */
  private get isOnline(): boolean {
    return this.options.api.ready() !== undefined;
  }
}
