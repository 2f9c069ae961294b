/**
 * Repairs what end-to-end state loses: a pairwise session that no longer
 * decrypts is reset (healing), a group sender key that never arrived is asked
 * of its sending device, and such requests from other member devices are
 * answered. Everything goes out through the outbox like any message.
 *
 * Invariants:
 * - Bounded and rate-limited by one rule (HEAL_INTERVAL_MS, KeyRequestThrottle):
 *   a session with a device is reset at most once per interval, whatever the
 *   chat; a device is asked for its key of a group at most once per interval;
 *   a device's requests in a group are answered at most once per interval.
 * - A key request is answered only for a member entitled to the epoch
 *   (GroupSessions.answerKeyRequest), and only when addressed to this device.
 */
import type { Content, SenderKeyRequest } from "@remessenger/protocol";
import type { PairwiseSessions } from "../e2e/pairwise-sessions.ts";
import type { GroupSessions } from "../group/group-sessions.ts";
import { KeyRequestThrottle } from "../group/key-request.ts";
import type { OutboxSender } from "../outbox/outbox-sender.ts";
import type { Clock } from "../runtime/clock.ts";
import { drop } from "../runtime/drop.ts";
import type { Logger } from "../runtime/logger.ts";
import type { OutboxEntry, ReceivedMessage } from "../store/client-store.ts";
import type { Sealer } from "./sealer.ts";
import { type SessionEmitter, reportProblem } from "./session-events.ts";

/** A session with a device is reset at most this often (a burst of undecryptable messages heals once). */
export const HEAL_INTERVAL_MS = 60_000;
/** The scope of a throttle kept per device, whatever the chat (no chat id is "*"). */
const ANY_CHAT = "*";

export interface RepairOptions {
  deviceId: string;
  e2e: PairwiseSessions;
  groups: GroupSessions;
  sealer: Sealer;
  outbox: OutboxSender;
  events: SessionEmitter;
  clock: Clock;
  logger: Logger;
}

export class Repair {
  private readonly options: RepairOptions;
  /**
   * Session resets this device started: one per peer device per interval, in
   * whichever chat (a pairwise session is the device's, not the chat's), by
   * the same bounded rule as the asking for sender keys.
   */
  private readonly heals = new KeyRequestThrottle(HEAL_INTERVAL_MS);
  private readonly keyRequests = new KeyRequestThrottle(HEAL_INTERVAL_MS);
  /** Answers to one device's key requests in one group, at most as often as a device may ask. */
  private readonly keyAnswers = new KeyRequestThrottle(HEAL_INTERVAL_MS);

  constructor(options: RepairOptions) {
    this.options = options;
  }

  /**
   * The session with a device failed: forget it, and tell the device through
   * a new session (from a fresh prekey of it), so its next message gets through.
   */
  heal(chatId: string, userId: string, deviceId: string, reason: string): void {
    const now = this.options.clock.nowMs();
    if (!this.heals.shouldAsk(ANY_CHAT, deviceId, now)) return;
    this.options.events.emit("healing", { chatId, userId, deviceId, reason });
    drop(
      this.options.e2e.resetSession(deviceId).then(() =>
        this.post(chatId, {
          body: { $case: "sessionReset", value: { targetDeviceId: deviceId, reason } },
          composedAtMs: now,
        }),
      ),
      (error) => {
        this.report(`resetting the session with ${deviceId}`, error);
      },
    );
  }

  /**
   * Another device reset its session with this one: in a group, it lost our
   * sender key with the session, and gets it again before our next message.
   */
  async sessionWasReset(chatId: string, fromDeviceId: string): Promise<void> {
    const { groups } = this.options;
    if (await groups.isKnownGroup(chatId)) await groups.forgetDistribution(chatId, fromDeviceId);
  }

  /**
   * A group message did not open for lack of its sender's key of `epoch`:
   * ask the sending device for it, pairwise (at most once per sender device
   * and group per HEAL_INTERVAL_MS), so its next messages open here. The
   * request goes through the outbox like any message (retried until the
   * server has it).
   */
  askForSenderKey(chatId: string, userId: string, deviceId: string, epoch: number, reason: string): void {
    if (!this.keyRequests.shouldAsk(chatId, deviceId, this.options.clock.nowMs())) return;
    drop(this.requestSenderKeyOnce(chatId, userId, deviceId, epoch, reason), (error) => {
      this.report(`asking ${deviceId} for its sender key`, error);
    });
  }

  /** Asks member device `deviceId` of group `chatId` for its sender key of `epoch`; see ClientSession.requestSenderKey. */
  requestSenderKey(chatId: string, deviceId: string, epoch: number): Promise<OutboxEntry> {
    return this.post(chatId, {
      body: { $case: "senderKeyRequest", value: { chatId, epoch, targetDeviceId: deviceId } },
      composedAtMs: this.options.clock.nowMs(),
    });
  }

  /**
   * Another member device asked for this device's sender key (pairwise, so
   * its sender is authenticated): GroupSessions.answerKeyRequest hands it over
   * when that user is entitled to the epoch, and the outcome is shown.
   */
  answerKeyRequest(record: ReceivedMessage, request: SenderKeyRequest): void {
    const { chatId, senderUserId: fromUserId, senderDeviceId: fromDeviceId } = record;
    const { groups, logger, events } = this.options;
    if (request.targetDeviceId !== this.options.deviceId) return;
    // Each answer costs a pairwise encryption: a device asking more often than the rule allows is ignored.
    if (!this.keyAnswers.shouldAsk(chatId, fromDeviceId, this.options.clock.nowMs())) {
      logger.warn({ chatId, deviceId: fromDeviceId }, "sender key request ignored: asked again too soon");
      return;
    }
    drop(
      groups.answerKeyRequest(chatId, fromUserId, fromDeviceId, request).then((outcome) => {
        const who = { chatId, fromUserId, fromDeviceId, epoch: request.epoch };
        if (outcome.kind === "answered") {
          logger.info({ chatId, deviceId: fromDeviceId, epoch: request.epoch }, "sender key handed out on request");
          events.emit("senderKeyRequest", { kind: "answered", ...who, iteration: outcome.iteration });
        } else {
          logger.warn(
            { chatId, deviceId: fromDeviceId, epoch: request.epoch, reason: outcome.reason },
            "sender key request refused",
          );
          events.emit("senderKeyRequest", {
            kind: "refused",
            ...who,
            reason: outcome.reason,
            detail: outcome.detail,
          });
        }
      }),
      (error) => {
        this.report(`answering ${fromDeviceId}'s sender key request`, error);
      },
    );
  }

  private async requestSenderKeyOnce(
    chatId: string,
    userId: string,
    deviceId: string,
    epoch: number,
    reason: string,
  ): Promise<void> {
    // A sender that has left the group cannot be reached in it (and sends nothing more there).
    const state = await this.options.groups.groupState(chatId);
    if (state?.members.includes(userId) !== true) return;
    this.options.events.emit("senderKeyRequested", { chatId, userId, deviceId, epoch, reason });
    await this.requestSenderKey(chatId, deviceId, epoch);
  }

  private async post(chatId: string, content: Content): Promise<OutboxEntry> {
    return this.options.outbox.queued(await this.options.sealer.sealNew(chatId, content));
  }

  private report(context: string, error: unknown): void {
    reportProblem(this.options.events, this.options.logger, context, error);
  }
}
