/**
 * Group sessions: what a group chat adds to the pairwise sessions
 * (e2e/pairwise-sessions.ts). Per group, the membership chain this device
 * verified (GroupChain), this device's sender key per epoch and the other
 * member devices' sender keys (sender-key.ts), their distribution
 * (KeyDistribution), all as encrypted, versioned records (GroupRecords).
 *
 * Invariants:
 * - A group message is sealed once for every member (one GroupEnvelope in the
 *   shared payload), in the epoch this device knows as current, and its key
 *   step commits with the outbox row that holds it.
 * - Before a message of an epoch leaves, this device's sender key of that
 *   epoch has reached every member device of the epoch (prepareSend).
 * - Only members of an epoch get its keys: a removed member none of the next
 *   epoch, an added member none of an earlier one.
 * - Opening judges the message by the epoch rules first (seq and server time:
 *   every member decides alike), then verifies its signature, then decrypts;
 *   every refusal is a reason, never a silent drop.
 * - No chain key is written anywhere but in these encrypted records.
 */
import {
  Content,
  ErrorCode,
  GroupEnvelope,
  type GroupState,
  type Message,
  RemessengerError,
  SendMessageRequest,
  type SenderKeyDistribution,
  type SenderKeyRequest,
  messageIdFromHex,
} from "@remessenger/protocol";
import type { Ed25519Provider } from "../crypto/device-signer.ts";
import { NeedsServerError } from "../e2e/pairwise-errors.ts";
import type { PairwiseSessions, Sealed } from "../e2e/pairwise-sessions.ts";
import type { Clock } from "../runtime/clock.ts";
import type { ClientStore, E2eWrite } from "../store/client-store.ts";
import { type EpochFailure, type GraceWindow, isMemberDuring, judgeGroupMessage } from "./epoch-window.ts";
import { type ChainServer, GroupChain, type OperationOutcome } from "./group-chain.ts";
import { type FromRecord, GroupRecords, fromKey, ownKey } from "./group-records.ts";
import { type DistributionServer, KeyDistribution, type KeyRequestOutcome } from "./key-distribution.ts";
import {
  type ReceivedSenderKey,
  SenderKeyError,
  type SenderKeyFailure,
  groupRoute,
  openGroupMessage,
  receiveDistribution,
  sealGroupMessage,
} from "./sender-key.ts";

/** What the group layer asks the server (the session's ServerApi answers). */
export type GroupServer = ChainServer & DistributionServer;

export interface GroupSessionsOptions {
  userId: string;
  deviceId: string;
  /** 32 bytes: encrypts every record at rest. */
  storageKey: Uint8Array;
  store: ClientStore;
  ed25519: Ed25519Provider;
  /** The pairwise layer: distributions and device lists go through it. */
  pairwise: PairwiseSessions;
  clock: Clock;
  window: GraceWindow;
}

export type GroupOpenFailure = EpochFailure | SenderKeyFailure | "unknown-group" | "no-sender-key" | "undecodable";

export type GroupOpened =
  | { kind: "content"; content: Content; writes: E2eWrite[]; isGrace: boolean }
  | {
      kind: "undecryptable";
      reason: GroupOpenFailure;
      detail: string;
      /** For "no-sender-key": the epoch whose key to ask the sending device for (key-request.ts). */
      missingEpoch?: number;
    };

export type DistributionOutcome =
  | { kind: "accepted"; writes: E2eWrite[] }
  | { kind: "rejected"; reason: GroupOpenFailure | "bad-distribution"; detail: string };

export class GroupSessions {
  private readonly options: GroupSessionsOptions;
  private readonly records: GroupRecords;
  private readonly chain: GroupChain;
  private readonly distribution: KeyDistribution;

  constructor(options: GroupSessionsOptions) {
    this.options = options;
    const { store, storageKey, ed25519, pairwise, clock, window, deviceId } = options;
    this.records = new GroupRecords({ store, storageKey, ed25519 });
    this.chain = new GroupChain({ store, records: this.records, pairwise, ed25519, window });
    this.distribution = new KeyDistribution({ deviceId, store, records: this.records, pairwise, clock });
  }

  /**
   * Where to fetch operations and send distributions; unset when offline. A
   * new connection checks every group's chain and member devices again.
   */
  setServer(server: GroupServer | undefined): void {
    this.chain.setServer(server);
    this.distribution.setServer(server);
  }

  /** Whether this device holds the chain of `chatId` (it is a group this device has seen). */
  async isKnownGroup(chatId: string): Promise<boolean> {
    return (await this.records.readGroup(chatId)) !== undefined;
  }

  /** The group as this device verified it (undefined when it has seen no operation of it). */
  async groupState(chatId: string): Promise<GroupState | undefined> {
    return (await this.records.readGroup(chatId))?.record.state;
  }

  /** See GroupChain.receiveOperation: the caller stores the message with `writes`. */
  receiveOperation(message: Message): Promise<OperationOutcome> {
    return this.chain.receiveOperation(message);
  }

  /** See GroupChain.refresh: once per connection, or now when `isForced`. */
  refresh(chatId: string, isForced = false): Promise<void> {
    return this.chain.refresh(chatId, isForced);
  }

  /** Deletes the sender keys of epochs whose grace window is over at `seq` and `serverTimeMs`. */
  pruneExpired(chatId: string, seq: number, serverTimeMs: number): Promise<void> {
    return this.chain.pruneExpired(chatId, seq, serverTimeMs);
  }

  /** See KeyDistribution.forgetDistribution: the device gets the key again before the next message. */
  forgetDistribution(chatId: string, deviceId: string): Promise<void> {
    return this.distribution.forgetDistribution(chatId, deviceId);
  }

  /** See KeyDistribution.answerKeyRequest. */
  answerKeyRequest(
    chatId: string,
    requesterUserId: string,
    requesterDeviceId: string,
    request: SenderKeyRequest,
  ): Promise<KeyRequestOutcome> {
    return this.distribution.answerKeyRequest(chatId, requesterUserId, requesterDeviceId, request);
  }

  /**
   * Seals `content` once for the whole group, with this device's sender key
   * of the current epoch (made here when it has none). Throws
   * NeedsServerError when this device does not know the group yet, and
   * PERMISSION_DENIED when its user is not a member.
   */
  async seal(chatId: string, messageIdHex: string, content: Content): Promise<Sealed & { epoch: number }> {
    const stored = await this.records.readGroup(chatId);
    if (stored === undefined) throw new NeedsServerError(`the membership of group ${chatId} is not known yet`);
    const { state } = stored.record;
    if (!state.members.includes(this.options.userId)) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, `this user is not a member of ${chatId}`);
    }
    const own = await this.records.ownKey(chatId, state.epoch);
    const signer = await this.records.signerFor(own.record.key);
    const messageId = messageIdFromHex(messageIdHex);
    const sealed = await sealGroupMessage(
      own.record.key,
      signer,
      Content.encode(content).finish(),
      groupRoute(chatId, messageId, this.options.deviceId),
    );
    const request: SendMessageRequest = {
      chatId,
      messageId,
      payload: GroupEnvelope.encode(sealed.envelope).finish(),
      devicePayloads: [],
    };
    return {
      sealed: SendMessageRequest.encode(request).finish(),
      writes: [this.records.write(ownKey(chatId, state.epoch), own.version, { ...own.record, key: sealed.key })],
      epoch: state.epoch,
    };
  }

  /**
   * Makes a sealed group message ready to leave, on a live connection: the
   * chain is compared with the server's (once per connection); a message of
   * an epoch this device knows has ended (written offline, or before a
   * rotation it just heard of) is "reseal": the caller seals it again in the
   * current epoch, so members who joined since read it and members who left
   * do not (resending is harmless: the server keeps the first bytes of a
   * message id). Otherwise this device's key of the message's epoch reaches
   * every member device that lacks it, before the message. The grace window
   * is for what this device could not know: messages already on their way
   * when the rotation happened. A message sealed before a member device was
   * handed the chain from a later position is "reseal" too.
   */
  async prepareSend(chatId: string, sealed: Uint8Array): Promise<"send" | "reseal"> {
    await this.chain.refresh(chatId);
    const request = SendMessageRequest.decode(sealed);
    if (request.payload.length === 0) return "send"; // a pairwise control message
    const envelope = GroupEnvelope.decode(request.payload);
    const stored = await this.records.readGroup(chatId);
    if (stored === undefined) throw new NeedsServerError(`the membership of group ${chatId} is not known yet`);
    const { state } = stored.record;
    if (!state.members.includes(this.options.userId)) {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_PERMISSION_DENIED,
        `this user is no longer a member of ${chatId}`,
      );
    }
    if (envelope.epoch < state.epoch) return "reseal";
    if (envelope.epoch > state.epoch) return "send";
    await this.distribution.distribute(chatId, state.epoch, state.members);
    // Sealed before a device that got the chain from a later position: sealed again, so it reads it too.
    const sent = await this.records.readSent(chatId, state.epoch);
    return envelope.iteration < (sent?.record.readableFrom ?? 0) ? "reseal" : "send";
  }

  /** Opens a group message (a GroupEnvelope in the shared payload) from another device. */
  async open(message: Message): Promise<GroupOpened> {
    const refuse = (reason: GroupOpenFailure, detail: string): GroupOpened => ({
      kind: "undecryptable",
      reason,
      detail,
    });
    let stored = await this.records.readGroup(message.chatId);
    if (stored === undefined && this.chain.isOnline) stored = await this.chain.catchUp(message.chatId, message.seq - 1);
    if (stored === undefined) return refuse("unknown-group", "this device knows no membership of this group");
    let envelope: GroupEnvelope;
    try {
      envelope = GroupEnvelope.decode(message.payload);
    } catch {
      return refuse("undecodable", "the payload is not a group envelope");
    }
    const verdict = judgeGroupMessage(
      stored.record.history,
      {
        epoch: envelope.epoch,
        seq: message.seq,
        serverTimeMs: message.serverTimeMs,
        senderUserId: message.senderUserId,
      },
      this.options.userId,
      this.options.window,
    );
    if (!verdict.isAccepted) return refuse(verdict.reason, verdict.detail);
    const key = fromKey(message.chatId, message.senderDeviceId, envelope.epoch);
    const record = (await this.options.store.readE2e([key])).get(key);
    const from = record === undefined ? undefined : this.records.decode<FromRecord>(key, record);
    if (from === undefined || from.userId !== message.senderUserId) {
      return {
        kind: "undecryptable",
        reason: "no-sender-key",
        detail: `no sender key of device ${message.senderDeviceId} for epoch ${envelope.epoch} reached this device`,
        missingEpoch: envelope.epoch,
      };
    }
    let opened;
    try {
      opened = await openGroupMessage(
        from.key,
        envelope,
        groupRoute(message.chatId, message.messageId, message.senderDeviceId),
        this.options.ed25519,
      );
    } catch (error) {
      if (error instanceof SenderKeyError) return refuse(error.reason, error.message);
      throw error;
    }
    let content: Content;
    try {
      content = Content.decode(opened.plaintext);
    } catch {
      return refuse("undecodable", "the decrypted content is not a Content");
    }
    // Keys of epochs whose window this message closed go in the same transaction.
    const pruned = await this.chain.pruneWrites(message.chatId, stored, message.seq, message.serverTimeMs);
    return {
      kind: "content",
      content,
      writes: [this.records.write(key, record?.version ?? 0, { ...from, key: opened.key }), ...pruned],
      isGrace: verdict.isGrace,
    };
  }

  /**
   * A sender key another member device handed this one (opened from the
   * pairwise session, so `message.senderDeviceId` is authenticated): kept
   * when its sender may send in that epoch at this place of the sequence and
   * this user was a member then. A key this device holds already is kept as
   * it is (never moved back).
   */
  async acceptDistribution(message: Message, distribution: SenderKeyDistribution): Promise<DistributionOutcome> {
    const stored = await this.records.readGroup(message.chatId);
    if (stored === undefined) return { kind: "rejected", reason: "unknown-group", detail: "no membership known" };
    if (distribution.chatId !== message.chatId) {
      return { kind: "rejected", reason: "bad-distribution", detail: "a sender key of another group" };
    }
    const verdict = judgeGroupMessage(
      stored.record.history,
      {
        epoch: distribution.epoch,
        seq: message.seq,
        serverTimeMs: message.serverTimeMs,
        senderUserId: message.senderUserId,
      },
      this.options.userId,
      this.options.window,
    );
    if (!verdict.isAccepted) return { kind: "rejected", reason: verdict.reason, detail: verdict.detail };
    const key = fromKey(message.chatId, message.senderDeviceId, distribution.epoch);
    if ((await this.options.store.readE2e([key])).has(key)) return { kind: "accepted", writes: [] };
    let received: ReceivedSenderKey;
    try {
      received = receiveDistribution(message.senderDeviceId, distribution);
    } catch (error) {
      return { kind: "rejected", reason: "bad-distribution", detail: (error as Error).message };
    }
    const record: FromRecord = { userId: message.senderUserId, key: received };
    return { kind: "accepted", writes: [this.records.write(key, 0, record)] };
  }

  /** Whether `userId` was a member of `chatId` during `epoch` (as this device verified it). */
  async wasMemberDuring(chatId: string, epoch: number, userId: string): Promise<boolean> {
    const stored = await this.records.readGroup(chatId);
    return stored !== undefined && isMemberDuring(stored.record.history, epoch, userId);
  }
}
