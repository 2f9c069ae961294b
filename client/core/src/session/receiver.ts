/**
 * Receives what the server pushes: messages (opened and stored by the
 * MessageOpener), receipts, the end of the initial sync. Pushes queue in
 * arrival order and are processed one at a time; acks go out in batches.
 *
 * Invariants:
 * - A received message is stored before it is acked; one at or below the
 *   chat's highest stored seq is not stored again but is acked (Inbox).
 *   Acks are cumulative per chat, batched, with request id 0, and go out
 *   when the queue is idle or every `ackBatchMax` messages.
 * - Pushes of a connection that is no longer the current one are dropped
 *   unacked: the server sends them again on the next one.
 * - A push that cannot be stored closes the connection, so nothing after it
 *   is acked before it is stored. More than MAX_INBOUND_QUEUE waiting pushes
 *   close it too (the server resends).
 * - After stopReceiving nothing more is stored or acked.
 */
import {
  MAX_ACKS_PER_REQUEST,
  type Message,
  type Receipt,
  type ServerPush,
  assertNever,
  messageIdToHex,
} from "@remessenger/protocol";
import type { ConnectionMonitor } from "../connection/connection-state.ts";
import { CLOSE_GOING_AWAY } from "../connection/transport.ts";
import type { GroupSessions } from "../group/group-sessions.ts";
import type { Clock } from "../runtime/clock.ts";
import { drop } from "../runtime/drop.ts";
import type { Logger } from "../runtime/logger.ts";
import type { ClientStore, ReceivedMessage } from "../store/client-store.ts";
import type { Connection } from "./connection.ts";
import type { PushSink } from "./connection-keeper.ts";
import { Inbox } from "./inbox.ts";
import type { MessageOpener } from "./message-opener.ts";
import type { Repair } from "./repair.ts";
import type { ServerApi } from "./server-api.ts";
import { type SessionEmitter, reportProblem } from "./session-events.ts";

/** Pushes waiting to be stored; beyond this the connection is dropped (the server resends). */
export const MAX_INBOUND_QUEUE = 20_000;

export interface ReceiverOptions {
  deviceId: string;
  userId: string;
  /** The chats' highest stored seqs (ClientStore.highestReceivedSeqs). */
  highestSeqs: ReadonlyMap<string, number>;
  store: ClientStore;
  api: ServerApi;
  monitor: ConnectionMonitor;
  opener: MessageOpener;
  repair: Repair;
  groups: GroupSessions;
  events: SessionEmitter;
  clock: Clock;
  logger: Logger;
  ackBatchMax: number;
}

export class Receiver implements PushSink {
  private readonly options: ReceiverOptions;
  private readonly inbox: Inbox;
  private readonly inbound: Array<{ connection: Connection; push: ServerPush }> = [];
  private draining: Promise<void> | undefined;
  private isStopped = false;

  constructor(options: ReceiverOptions) {
    this.options = options;
    this.inbox = new Inbox(options.highestSeqs);
  }

  startConnection(): void {
    this.inbox.startConnection();
  }

  take(connection: Connection, push: ServerPush): void {
    if (this.inbound.length >= MAX_INBOUND_QUEUE) {
      connection.close(CLOSE_GOING_AWAY, `more than ${MAX_INBOUND_QUEUE} pushes waiting to be stored`);
      return;
    }
    this.inbound.push({ connection, push });
    this.draining ??= this.drain().finally(() => {
      this.draining = undefined;
    });
  }

  /** Takes no more messages: later pushes are neither stored nor acked. */
  stopReceiving(): void {
    this.isStopped = true;
  }

  /** Resolves once every push taken so far is processed. */
  async drained(): Promise<void> {
    await this.draining;
  }

  /** The cumulative acks of this connection, for a confirmed ack (ClientSession.confirmAcks). */
  currentAcks(): ReturnType<Inbox["currentAcks"]> {
    return this.inbox.currentAcks();
  }

  /** Sends the acks due, without an answer; stops at the first that cannot go (the pipe closed). */
  flushAcks(): void {
    const { api, events, logger } = this.options;
    if (!api.isOpen) return;
    for (
      let acks = this.inbox.takeAcks(MAX_ACKS_PER_REQUEST);
      acks.length > 0;
      acks = this.inbox.takeAcks(MAX_ACKS_PER_REQUEST)
    ) {
      try {
        if (!api.notifyAcks(acks)) return;
      } catch (error) {
        // The pipe just closed: the next connection acks again what the server resends.
        logger.debug({ reason: error instanceof Error ? error.message : String(error) }, "ack not sent");
        return;
      }
      events.emit("acked", acks);
    }
  }

  /** Processes pushes one at a time, in arrival order; acks when idle or every `ackBatchMax`. */
  private async drain(): Promise<void> {
    for (let item = this.inbound.shift(); item !== undefined; item = this.inbound.shift()) {
      const { connection, push } = item;
      // Pushes of a dropped connection were not acked; the server sends them again.
      if (!this.options.api.isCurrent(connection)) continue;
      try {
        await this.handle(push);
      } catch (error) {
        reportProblem(this.options.events, this.options.logger, "storing a received message", error);
        // Nothing after this message may be acked before it is stored: start over.
        connection.close(CLOSE_GOING_AWAY, "could not store a received message");
        continue;
      }
      if (this.inbox.unacked >= this.options.ackBatchMax) this.flushAcks();
    }
    this.flushAcks();
  }

  private async handle(push: ServerPush): Promise<void> {
    const body = push.push;
    switch (body?.$case) {
      case "message":
        await this.receiveMessage(body.value);
        return;
      case "receipt":
        await this.receiveReceipt(body.value);
        return;
      case "syncComplete":
        this.options.monitor.dispatch({ type: "synced", atMs: this.options.clock.nowMs() });
        this.options.events.emit("synced", { pushed: body.value.pushed });
        return;
      case undefined:
        this.options.logger.warn({}, "empty push ignored");
        return;
      default:
        assertNever(body);
    }
  }

  private async receiveMessage(message: Message): Promise<void> {
    if (this.isStopped) return;
    const { opener, repair, events } = this.options;
    const { chatId, seq } = message;
    if (this.inbox.classify(chatId, seq) === "duplicate") {
      this.inbox.skipped(chatId, seq);
      return;
    }
    const base: ReceivedMessage = {
      chatId,
      seq,
      messageId: messageIdToHex(message.messageId),
      senderUserId: message.senderUserId,
      senderDeviceId: message.senderDeviceId,
      serverTimeMs: message.serverTimeMs,
      content: undefined,
    };
    const isOwnDevice = message.senderDeviceId === this.options.deviceId;
    if (message.groupOperation !== undefined) {
      await this.receiveOperation(message, base, isOwnDevice);
      return;
    }
    const { record, isNew, heal, isControl, missingKeyEpoch } = isOwnDevice
      ? await opener.own(message, base)
      : await opener.sealed(message, base);
    this.inbox.stored(chatId, seq);
    // Not new: another process on this profile stored (and showed) it first.
    if (!isNew) return;
    const body = record.content?.body;
    if (body?.$case === "sessionReset") {
      if (body.value.targetDeviceId === this.options.deviceId) {
        events.emit("sessionReset", {
          chatId,
          fromUserId: record.senderUserId,
          fromDeviceId: record.senderDeviceId,
          reason: body.value.reason,
        });
        await repair.sessionWasReset(chatId, record.senderDeviceId);
      }
      return;
    }
    if (body?.$case === "senderKeyRequest") {
      if (!isOwnDevice) repair.answerKeyRequest(record, body.value);
      return;
    }
    // Key distributions (ours echoed back, or addressed to other devices) are never shown.
    if (isControl || body?.$case === "senderKey") return;
    events.emit("message", { message: record, isOwnDevice });
    if (heal !== undefined) repair.heal(chatId, record.senderUserId, record.senderDeviceId, heal);
    if (missingKeyEpoch !== undefined) {
      repair.askForSenderKey(chatId, record.senderUserId, record.senderDeviceId, missingKeyEpoch, record.problem ?? "");
    }
  }

  /**
   * A group's membership operation, stored by the opener, shown as a `group`
   * event (this device's own ones were shown when it made them, by
   * createGroup / changeGroup); a refused one with its reason.
   */
  private async receiveOperation(message: Message, base: ReceivedMessage, isOwnDevice: boolean): Promise<void> {
    const { opener, store, events, groups, logger } = this.options;
    const outcome = await opener.operation(message, base);
    this.inbox.stored(base.chatId, base.seq);
    if (!outcome.isNew) return;
    const { result } = outcome;
    if (result.kind === "applied") {
      const { title, members } = result.change;
      await store.saveChats([{ chatId: base.chatId, kind: "group", title, memberUserIds: members }]);
      if (!isOwnDevice) events.emit("group", { kind: "change", change: result.change });
      drop(groups.pruneExpired(base.chatId, base.seq, base.serverTimeMs), (error) => {
        reportProblem(events, logger, "deleting the sender keys of ended epochs", error);
      });
    } else {
      logger.warn({ chatId: base.chatId, seq: base.seq, reason: result.reason }, "group operation refused");
      events.emit("group", {
        kind: "rejected",
        chatId: base.chatId,
        seq: base.seq,
        actorUserId: base.senderUserId,
        reason: result.reason,
        detail: result.detail,
      });
    }
  }

  private async receiveReceipt(receipt: Receipt): Promise<void> {
    // Our own other devices' cursors say nothing about delivery to the other side.
    if (receipt.userId === this.options.userId) return;
    for (const entry of await this.options.store.applyReceipt(receipt.chatId, receipt.throughSeq))
      this.options.events.emit("outbox", entry);
  }
}
