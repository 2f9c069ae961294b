/**
 * Group sessions: what a group chat adds to the pairwise sessions
 * (e2e/pairwise-sessions.ts). Per group, the membership chain this device
 * verified (GroupChain), this device's sender key per epoch and the other
 * member devices' sender keys (sender-key.ts), their distribution
 * (KeyDistribution), all as encrypted, versioned records (GroupRecords).
 *
 * GroupSessions is the top of the E2E layer: it takes the E2E lock (shared
 * with PairwiseSessions) inside its own methods, and the steps that commit
 * with a store row are its methods too: a seal with its outbox row
 * (e2e/outbox-commits.ts), every message from another device, group or
 * pairwise, opened (group-opening.ts) and stored with its received row
 * (e2e/received-commits.ts).
 *
 * Invariants:
 * - A group message is sealed once for every member (one GroupEnvelope in the
 *   shared payload), in the epoch this device knows as current, and its key
 *   step commits with the outbox row that holds it.
 * - Before a message of an epoch leaves, this device's sender key of that
 *   epoch has reached every member device of the epoch (prepareSend).
 * - Only members of an epoch get its keys: a removed member none of the next
 *   epoch, an added member none of an earlier one.
 * - Opening judges the message by the epoch rules first (group-opening.ts);
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
import type { E2eLock } from "../e2e/e2e-lock.ts";
import { commitNew, commitQueued, commitReplacement } from "../e2e/outbox-commits.ts";
import { NeedsServerError } from "../e2e/pairwise-errors.ts";
import type { PairwiseSessions, Sealed } from "../e2e/pairwise-sessions.ts";
import { type Received, commitOpened, commitOperation } from "../e2e/received-commits.ts";
import { retryStale } from "../e2e/stale-retry.ts";
import type { Clock } from "../runtime/clock.ts";
import type { ClientStore, NewOutboxMessage, OutboxEntry, ReceivedMessage } from "../store/client-store.ts";
import { type GraceWindow, isMemberDuring } from "./epoch-window.ts";
import { type ChainServer, GroupChain, type OperationOutcome } from "./group-chain.ts";
import {
  type DistributionOutcome,
  type GroupOpened,
  type GroupOpeningDeps,
  acceptDistribution,
  openFromDevice,
  openGroup,
} from "./group-opening.ts";
import { GroupRecords, ownKey } from "./group-records.ts";
import { type DistributionServer, KeyDistribution, type KeyRequestOutcome } from "./key-distribution.ts";
import { groupRoute, sealGroupMessage } from "./sender-key.ts";

export type { DistributionOutcome, GroupOpened, GroupOpenFailure } from "./group-opening.ts";

/** A queued group message is sealed again in a newer epoch at most this often in a row before it waits. */
export const MAX_EPOCH_RESEALS = 3;

/** What the group layer asks the server (the session's ServerApi answers). */
export type GroupServer = ChainServer & DistributionServer;

export interface GroupSessionsOptions {
  userId: string;
  deviceId: string;
  /** 32 bytes: encrypts every record at rest. */
  storageKey: Uint8Array;
  store: ClientStore;
  /** The one lock of this device's E2E state, the one PairwiseSessions was given. */
  lock: E2eLock;
  ed25519: Ed25519Provider;
  /** The pairwise layer: distributions and device lists go through it. */
  pairwise: PairwiseSessions;
  clock: Clock;
  window: GraceWindow;
}

export class GroupSessions {
  private readonly options: GroupSessionsOptions;
  private readonly records: GroupRecords;
  private readonly chain: GroupChain;
  private readonly distribution: KeyDistribution;
  private readonly opening: GroupOpeningDeps;

  constructor(options: GroupSessionsOptions) {
    this.options = options;
    const { store, storageKey, ed25519, pairwise, clock, window, deviceId, userId } = options;
    this.records = new GroupRecords({ store, storageKey, ed25519 });
    this.chain = new GroupChain({ store, records: this.records, pairwise, ed25519, window });
    this.distribution = new KeyDistribution({ deviceId, store, records: this.records, pairwise, clock });
    this.opening = { userId, store, records: this.records, chain: this.chain, ed25519, window };
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

  /** Checks one membership operation against the verified chain (GroupChain.receiveOperation); stores nothing. */
  receiveOperation(message: Message): Promise<OperationOutcome> {
    return this.options.lock.run(() => this.chain.receiveOperation(message));
  }

  /** A membership operation received: checked and stored with its place in the sequence (e2e/received-commits.ts). */
  storeOperation(message: Message, base: ReceivedMessage): Promise<{ result: OperationOutcome; isNew: boolean }> {
    const { lock, store } = this.options;
    return commitOperation(lock, store, base, () => this.chain.receiveOperation(message));
  }

  /** This device's own operation, taken by the server: applied here at once, its writes stored. */
  applyOwnOperation(message: Message): Promise<OperationOutcome> {
    return this.options.lock.run(async () => {
      const outcome = await this.chain.receiveOperation(message);
      if (outcome.kind === "applied") await this.options.store.writeE2e(outcome.writes);
      return outcome;
    });
  }

  /** See GroupChain.refresh: once per connection, or now when `isForced`. */
  refresh(chatId: string, isForced = false): Promise<void> {
    return this.options.lock.run(() => this.chain.refresh(chatId, isForced));
  }

  /** Deletes the sender keys of epochs whose grace window is over at `seq` and `serverTimeMs`. */
  pruneExpired(chatId: string, seq: number, serverTimeMs: number): Promise<void> {
    return this.options.lock.run(() => this.chain.pruneExpired(chatId, seq, serverTimeMs));
  }

  /** See KeyDistribution.forgetDistribution: the device gets the key again before the next message. */
  forgetDistribution(chatId: string, deviceId: string): Promise<void> {
    return this.options.lock.run(() => this.distribution.forgetDistribution(chatId, deviceId));
  }

  /** See KeyDistribution.answerKeyRequest (run again from a fresh read when another process moved the state). */
  answerKeyRequest(
    chatId: string,
    requesterUserId: string,
    requesterDeviceId: string,
    request: SenderKeyRequest,
  ): Promise<KeyRequestOutcome> {
    const answer = (): Promise<KeyRequestOutcome> =>
      this.distribution.answerKeyRequest(chatId, requesterUserId, requesterDeviceId, request);
    return this.options.lock.run(() => retryStale(answer));
  }

  /**
   * Seals a new message of a group and stores it in the outbox with its key
   * step (unsealed when it cannot be sealed now; see e2e/outbox-commits.ts).
   * `isOnline`: the chain is compared with the server's first.
   */
  sealIntoOutbox(message: NewOutboxMessage, isOnline: boolean): Promise<OutboxEntry> {
    const { lock, store } = this.options;
    return commitNew(lock, store, message, () =>
      this.sealForChat(message.chatId, message.messageId, message.content, isOnline),
    );
  }

  /** Seals a queued group message that has no sealed bytes yet, once; resolves with the bytes to send. */
  sealQueued(entry: OutboxEntry, isOnline: boolean): Promise<Uint8Array> {
    const { lock, store } = this.options;
    return commitQueued(lock, store, entry, () =>
      this.sealForChat(entry.chatId, entry.messageId, entry.content, isOnline),
    );
  }

  /**
   * A queued group message about to leave (prepareSend), sealed again in the
   * current epoch while its own has ended (`onReseal` is told); resolves
   * with the bytes to send.
   */
  async readyToSend(entry: OutboxEntry, sealed: Uint8Array, onReseal: () => void): Promise<Uint8Array> {
    const { lock, store } = this.options;
    let current = sealed;
    for (let round = 0; round < MAX_EPOCH_RESEALS; round += 1) {
      if ((await this.prepareSend(entry.chatId, current)) === "send") return current;
      onReseal();
      current = await commitReplacement(lock, store, entry, current, () =>
        this.seal(entry.chatId, entry.messageId, entry.content),
      );
    }
    throw new RemessengerError(
      ErrorCode.ERROR_CODE_UNAVAILABLE,
      `the group's epoch changed ${MAX_EPOCH_RESEALS} times while sending; will retry`,
      { retryAfterMs: 2_000 },
    );
  }

  /**
   * Opens a message from another device, group or pairwise (a pairwise one
   * may carry a sender key: kept with the message), and stores it with the
   * state it moved (e2e/received-commits.ts).
   */
  openAndStore(message: Message, base: ReceivedMessage): Promise<Received> {
    const { lock, store, pairwise } = this.options;
    return commitOpened(lock, store, base, () =>
      openFromDevice({ ...this.opening, pairwise, isKnownGroup: (id) => this.isKnownGroup(id) }, message),
    );
  }

  /**
   * Seals a message for a group chat: once for every member with this
   * device's sender key; a session reset or a key request goes pairwise to
   * its one device.
   */
  private async sealForChat(
    chatId: string,
    messageIdHex: string,
    content: Content,
    isOnline: boolean,
  ): Promise<Sealed> {
    // Online, the chain is compared with the server's first (once per connection): a one-shot sender
    // that heard no pushes, or a device just added, seals in the group's current epoch.
    if (isOnline) {
      try {
        await this.chain.refresh(chatId);
      } catch (error) {
        // Sealed with what this device knows; the chain is compared again before the message leaves.
        if (!(error instanceof RemessengerError)) throw error;
      }
    }
    const body = content.body;
    if (body?.$case !== "sessionReset" && body?.$case !== "senderKeyRequest") {
      return this.seal(chatId, messageIdHex, content);
    }
    const members = (await this.groupState(chatId))?.members ?? [];
    const target = body.value.targetDeviceId;
    return this.options.pairwise.sealForMembers(chatId, messageIdHex, content, members, (id) => id === target);
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
  prepareSend(chatId: string, sealed: Uint8Array): Promise<"send" | "reseal"> {
    return this.options.lock.run(() => this.judgeSend(chatId, sealed));
  }

  private async judgeSend(chatId: string, sealed: Uint8Array): Promise<"send" | "reseal"> {
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

  /** Opens a group message (a GroupEnvelope in the shared payload) from another device; see group-opening.ts. */
  open(message: Message): Promise<GroupOpened> {
    return openGroup(this.opening, message);
  }

  /** A sender key another member device handed this one; see group-opening.ts. */
  acceptDistribution(message: Message, distribution: SenderKeyDistribution): Promise<DistributionOutcome> {
    return acceptDistribution(this.opening, message, distribution);
  }

  /** Whether `userId` was a member of `chatId` during `epoch` (as this device verified it). */
  async wasMemberDuring(chatId: string, epoch: number, userId: string): Promise<boolean> {
    const stored = await this.records.readGroup(chatId);
    return stored !== undefined && isMemberDuring(stored.record.history, epoch, userId);
  }
}
