/**
 * Hands this device's sender keys to the member devices that need them:
 * before a message of an epoch leaves, every member device of the epoch gets
 * the key (pairwise-encrypted `Content.sender_key` control messages in the
 * group chat itself, so the group's sequence orders each distribution before
 * the messages it opens); a device that lost the key gets it again after a
 * session reset or on its request, if it is entitled to the epoch.
 *
 * Invariants:
 * - The first distribution of an epoch hands out the chain from the first
 *   message sealed in it; a device reached later gets it from where it
 *   stands then, and `readableFrom` records that, so a queued message sealed
 *   before is sealed again (GroupSessions.prepareSend).
 * - Only members of an epoch get its key (key-request.ts judges requests).
 * - The pairwise ratchet steps are stored before their ciphertexts leave.
 */
import {
  type Content,
  SendMessageRequest,
  type SendMessageResponse,
  type SenderKeyRequest,
  messageIdToHex,
  newMessageId,
} from "@remessenger/protocol";
import { NeedsServerError } from "../e2e/pairwise-errors.ts";
import type { PairwiseSessions } from "../e2e/pairwise-sessions.ts";
import type { Clock } from "../runtime/clock.ts";
import type { ClientStore } from "../store/client-store.ts";
import { type GroupRecords, type OwnRecord, type SentRecord, ownKey, sentKey } from "./group-records.ts";
import { type KeyRequestRefusal, judgeKeyRequest } from "./key-request.ts";
import { distributionOf } from "./sender-key.ts";

/** Member devices one distribution message carries (keeps it under MAX_MESSAGE_BYTES with prekey setups). */
export const DISTRIBUTION_BATCH = 48;
/** How often a sender looks again for member devices its key has not reached (new devices). */
export const COVERAGE_CHECK_MS = 60_000;

export type KeyRequestOutcomeRefusal = KeyRequestRefusal | "bad-request" | "unknown-group" | "no-key" | "unreachable";

/** What this device did with another device's request for its sender key. */
export type KeyRequestOutcome =
  | { kind: "answered"; epoch: number; iteration: number }
  | { kind: "refused"; reason: KeyRequestOutcomeRefusal; detail: string };

/** Where distributions are sent. */
export interface DistributionServer {
  sendMessage(request: SendMessageRequest): Promise<SendMessageResponse>;
}

export interface KeyDistributionOptions {
  deviceId: string;
  store: ClientStore;
  records: GroupRecords;
  /** Distributions are sealed pairwise, for the member devices it lists. */
  pairwise: PairwiseSessions;
  clock: Clock;
}

export class KeyDistribution {
  private readonly options: KeyDistributionOptions;
  private readonly records: GroupRecords;
  private server: DistributionServer | undefined;
  /** Per group and epoch: when the member devices were last compared with those the key reached. */
  private readonly coveredAtMs = new Map<string, number>();

  constructor(options: KeyDistributionOptions) {
    this.options = options;
    this.records = options.records;
  }

  /** Where to send distributions; unset when offline. A new connection checks every epoch's devices again. */
  setServer(server: DistributionServer | undefined): void {
    this.server = server;
    this.coveredAtMs.clear();
  }

  /** Hands this device's key of `epoch` to every member device it has not reached yet (checked every COVERAGE_CHECK_MS). */
  async distribute(chatId: string, epoch: number, members: readonly string[]): Promise<void> {
    const { pairwise, store, clock } = this.options;
    const coverage = `${chatId}/${epoch}`;
    let sent = await this.records.readSent(chatId, epoch);
    const checkedAt = this.coveredAtMs.get(coverage);
    if (sent?.record.isComplete === true && checkedAt !== undefined && clock.nowMs() - checkedAt < COVERAGE_CHECK_MS) {
      return;
    }
    const server = this.requireServer(`hand out the sender key of group ${chatId}`);
    const reached = new Set(sent?.record.deviceIds ?? []);
    const missing = (await pairwise.memberDevices(members)).filter((d) => !reached.has(d.deviceId));
    let own = await this.records.ownKey(chatId, epoch);
    const isFirst = sent?.record.isComplete !== true;
    const from = isFirst && own.record.origin !== undefined ? own.record.origin : own.record.key;
    const content: Content = {
      body: {
        $case: "senderKey",
        value: { ...distributionOf(own.record.key), iteration: from.iteration, chainKey: from.chainKey },
      },
      composedAtMs: clock.nowMs(),
    };
    let readableFrom = sent?.record.readableFrom ?? 0;
    for (let i = 0; i < missing.length; i += DISTRIBUTION_BATCH) {
      const batch = missing.slice(i, i + DISTRIBUTION_BATCH);
      const wanted = new Set(batch.map((d) => d.deviceId));
      const users = [...new Set(batch.map((d) => d.userId))];
      const messageIdHex = messageIdToHex(newMessageId());
      const sealed = await pairwise.sealForMembers(chatId, messageIdHex, content, users, (id) => wanted.has(id));
      if (sealed.deviceIds.length === 0) continue; // none of them has prekeys yet: next check
      // The pairwise ratchet steps are stored before their ciphertexts leave.
      await store.writeE2e(sealed.writes);
      await server.sendMessage(SendMessageRequest.decode(sealed.sealed));
      for (const id of sealed.deviceIds) reached.add(id);
      readableFrom = Math.max(readableFrom, from.iteration);
      const record: SentRecord = { deviceIds: [...reached], isComplete: false, readableFrom };
      await store.writeE2e([this.records.write(sentKey(chatId, epoch), sent?.version ?? 0, record)]);
      sent = await this.records.readSent(chatId, epoch);
    }
    own = await this.records.ownKey(chatId, epoch);
    const done: SentRecord = { deviceIds: [...reached], isComplete: true, readableFrom };
    await store.writeE2e([
      this.records.write(sentKey(chatId, epoch), sent?.version ?? 0, done),
      this.records.write(ownKey(chatId, epoch), own.version, { ...own.record, origin: undefined }),
    ]);
    this.coveredAtMs.set(coverage, clock.nowMs());
  }

  /**
   * A member device lost this device's sender key (it reset the pairwise
   * session after a message it could not open): the next message hands it
   * the key again, from where the chain stands.
   */
  async forgetDistribution(chatId: string, deviceId: string): Promise<void> {
    const stored = await this.records.readGroup(chatId);
    if (stored === undefined) return;
    const epoch = stored.record.state.epoch;
    const sent = await this.records.readSent(chatId, epoch);
    this.coveredAtMs.delete(`${chatId}/${epoch}`);
    if (sent === undefined || !sent.record.deviceIds.includes(deviceId)) return;
    await this.options.store.writeE2e([
      this.records.write(sentKey(chatId, epoch), sent.version, {
        ...sent.record,
        deviceIds: sent.record.deviceIds.filter((id) => id !== deviceId),
      }),
    ]);
  }

  /**
   * Another member device asked for this device's sender key of `epoch` (it
   * lost the distribution; the request came pairwise, so the requester's
   * device is authenticated): handed to that device alone, from where the
   * chain stands — messages sealed from now on open there — when its user is
   * a member now and was one during the epoch (key-request.ts). Refused with
   * the reason otherwise, or when this device has no key of that epoch (it
   * sent nothing in it, or the key was deleted after the epoch's window).
   * Sends the distribution itself (live connection only).
   */
  async answerKeyRequest(
    chatId: string,
    requesterUserId: string,
    requesterDeviceId: string,
    request: SenderKeyRequest,
  ): Promise<KeyRequestOutcome> {
    const refuse = (reason: KeyRequestOutcomeRefusal, detail: string): KeyRequestOutcome => ({
      kind: "refused",
      reason,
      detail,
    });
    const { pairwise, store, clock } = this.options;
    if (request.chatId !== chatId) return refuse("bad-request", "a request for another group's key");
    if (request.targetDeviceId !== this.options.deviceId) return refuse("bad-request", "a request to another device");
    const stored = await this.records.readGroup(chatId);
    if (stored === undefined) return refuse("unknown-group", "this device knows no membership of this group");
    const epoch = request.epoch;
    const verdict = judgeKeyRequest(stored.record.history, requesterUserId, epoch);
    if (!verdict.isAllowed) return refuse(verdict.reason, verdict.detail);
    const ownStored = (await store.readE2e([ownKey(chatId, epoch)])).get(ownKey(chatId, epoch));
    if (ownStored === undefined) return refuse("no-key", `this device holds no sender key of epoch ${epoch}`);
    const own = this.records.decode<OwnRecord>(ownKey(chatId, epoch), ownStored);
    const server = this.requireServer(`answer a sender key request in group ${chatId}`);
    // Before the epoch's first distribution the chain is handed from its first message, as everyone gets it.
    const from = own.origin ?? own.key;
    const content: Content = {
      body: {
        $case: "senderKey",
        value: { ...distributionOf(own.key), iteration: from.iteration, chainKey: from.chainKey },
      },
      composedAtMs: clock.nowMs(),
    };
    const sealed = await pairwise.sealForMembers(
      chatId,
      messageIdToHex(newMessageId()),
      content,
      [requesterUserId],
      (id) => id === requesterDeviceId,
    );
    if (sealed.deviceIds.length === 0) {
      return refuse("unreachable", `device ${requesterDeviceId} has no session or prekeys to reach it`);
    }
    // The pairwise ratchet step is stored before its ciphertext leaves.
    await store.writeE2e(sealed.writes);
    await server.sendMessage(SendMessageRequest.decode(sealed.sealed));
    // A queued message sealed before this position is sealed again before it leaves (prepareSend), so it reads it too.
    const sent = await this.records.readSent(chatId, epoch);
    const record: SentRecord = {
      deviceIds: [...new Set([...(sent?.record.deviceIds ?? []), requesterDeviceId])],
      isComplete: sent?.record.isComplete ?? false,
      readableFrom: Math.max(sent?.record.readableFrom ?? 0, from.iteration),
    };
    await store.writeE2e([this.records.write(sentKey(chatId, epoch), sent?.version ?? 0, record)]);
    return { kind: "answered", epoch, iteration: from.iteration };
  }

  private requireServer(what: string): DistributionServer {
    if (this.server === undefined) throw new NeedsServerError(`the server is needed to ${what}`);
    return this.server;
  }
}
