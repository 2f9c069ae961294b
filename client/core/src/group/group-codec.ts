/**
 * The group layer of the end-to-end codec: what a group chat adds to the
 * pairwise one (e2e/pairwise-sessions.ts). It keeps, per group, the
 * membership chain this device verified (every operation checked against the
 * acting device's identity key and the rules of wire/group-operation.ts), the
 * history the epoch rules need (epoch-window.ts), this device's sender key
 * per epoch and the other member devices' sender keys (sender-key.ts), all as
 * encrypted, versioned records in the ClientStore.
 *
 * Invariants:
 * - A group message is sealed once for every member (one GroupEnvelope in the
 *   shared payload), in the epoch this device knows as current, and its key
 *   step commits with the outbox row that holds it.
 * - Before a message of an epoch leaves, this device's sender key of that
 *   epoch has reached every member device of the epoch: distributions travel
 *   as pairwise-encrypted `Content.sender_key` control messages in the group
 *   chat itself, so the group's sequence orders each distribution before the
 *   messages it opens. The first distribution of an epoch hands out the chain
 *   from the first message sealed in it; a device seen later (linked, or one
 *   that lost its key and reset the session) gets the chain from where it
 *   stands then; so does a member device that asks for the key again
 *   (answerKeyRequest), if it is entitled to the epoch.
 * - Only members of an epoch get its keys: a removed member none of the next
 *   epoch, an added member none of an earlier one.
 * - Opening judges the message by the epoch rules first (seq and server time:
 *   every member decides alike), then verifies its signature, then decrypts;
 *   every refusal is a reason, never a silent drop.
 * - No chain key is written anywhere but in these encrypted records.
 */
import type { DeviceSigner, Ed25519Provider } from "../crypto/device-signer.ts";
import {
  equalBytes,
  RemessengerError,
  messageIdFromHex,
  messageIdToHex,
  newMessageId,
  type GroupOperationFailure,
  GroupOperationError,
  type GroupState,
  checkReceivedOperations,
  decodeOperation,
  describeKind,
  operationHash,
  operationProof,
  startsEpoch,
  type Chat,
  Content,
  ErrorCode,
  GroupEnvelope,
  type GroupOperation,
  type Message,
  SendMessageRequest,
  type SendMessageResponse,
  type SenderKeyDistribution,
  type SenderKeyRequest,
} from "@remessenger/protocol";
import { openRecord, sealRecord } from "../e2e/e2e-records.ts";
import type { ClientStore, E2eRecord, E2eWrite } from "../store/client-store.ts";
import type { Clock } from "../runtime/clock.ts";
import { NeedsServerError } from "../e2e/pairwise-errors.ts";
import type { PairwiseSessions, Sealed } from "../e2e/pairwise-sessions.ts";
import {
  EMPTY_HISTORY,
  type EpochFailure,
  type GraceWindow,
  type GroupHistory,
  appendHistory,
  epochStart,
  isMemberDuring,
  isWithinWindow,
  judgeGroupMessage,
} from "./epoch-window.ts";
import { type KeyRequestRefusal, judgeKeyRequest } from "./key-request.ts";
import {
  type OwnSenderKey,
  type ReceivedSenderKey,
  SenderKeyError,
  type SenderKeyFailure,
  createOwnSenderKey,
  distributionOf,
  groupRoute,
  openGroupMessage,
  receiveDistribution,
  sealGroupMessage,
} from "./sender-key.ts";

/** Member devices one distribution message carries (keeps it under MAX_MESSAGE_BYTES with prekey setups). */
export const DISTRIBUTION_BATCH = 48;
/** How often a sender looks again for member devices its key has not reached (new devices). */
export const COVERAGE_CHECK_MS = 60_000;
/** Operations fetched per catch-up request, and most pages fetched at once. */
const OPERATIONS_PAGE = 500;
const MAX_CATCH_UP_PAGES = 100;
/** Signers of sender keys kept in memory (one per group and epoch this device sends in). */
const MAX_SIGNERS = 64;
/** Parsed group records kept in memory. */
const MAX_CACHED_GROUPS = 64;

/** What the group layer asks the server (through the session's live connection). */
export interface GroupServer {
  getChat(chatId: string): Promise<Chat>;
  /** Operations (messages with group_operation) after `afterSeq`, ascending; at most `limit`. */
  getGroupOperations(chatId: string, afterSeq: number, limit: number): Promise<Message[]>;
  sendMessage(request: SendMessageRequest): Promise<SendMessageResponse>;
}

export interface GroupCodecOptions {
  userId: string;
  deviceId: string;
  /** 32 bytes: encrypts every record at rest. */
  storageKey: Uint8Array;
  store: ClientStore;
  ed25519: Ed25519Provider;
  /** The pairwise layer: distributions and device lists go through it. */
  e2e: PairwiseSessions;
  clock: Clock;
  window: GraceWindow;
}

/** A membership operation that became part of the group's chain, as `listen` shows it. */
export interface GroupChange {
  chatId: string;
  seq: number;
  /** "created", "added", "removed", "left", "promoted", "demoted", "renamed", "rotated". */
  change: string;
  actorUserId: string;
  userIds: string[];
  /** The group's title after the operation. */
  title: string;
  epoch: number;
  /** The operation started a new epoch (new sender keys): a rotation. */
  isRotation: boolean;
  members: string[];
  admins: string[];
}

export type OperationFailure = GroupOperationFailure | "equivocation";

export type OperationOutcome =
  | { kind: "applied"; change: GroupChange; writes: E2eWrite[] }
  | { kind: "rejected"; reason: OperationFailure; detail: string };

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

export type KeyRequestOutcomeRefusal = KeyRequestRefusal | "bad-request" | "unknown-group" | "no-key" | "unreachable";

/** What this device did with another device's request for its sender key. */
export type KeyRequestOutcome =
  | { kind: "answered"; epoch: number; iteration: number }
  | { kind: "refused"; reason: KeyRequestOutcomeRefusal; detail: string };

export type DistributionOutcome =
  | { kind: "accepted"; writes: E2eWrite[] }
  | { kind: "rejected"; reason: GroupOpenFailure | "bad-distribution"; detail: string };

interface GroupRecord {
  state: GroupState;
  history: GroupHistory;
  lastOperationSeq: number;
  /** Hashes of the operations applied, by seq (bounded like the history): catches a server that shows two. */
  recent: Array<{ seq: number; hash: Uint8Array }>;
  /** Sender keys of epochs up to this one were deleted (their windows are over). */
  prunedThroughEpoch: number;
}

interface OwnRecord {
  key: OwnSenderKey;
  /** Where the chain stood when the epoch's first message was sealed; dropped once that position was handed out. */
  origin: { iteration: number; chainKey: Uint8Array } | undefined;
}

interface SentRecord {
  /** Member devices this device's key of the epoch reached. */
  deviceIds: string[];
  /** The epoch's first distribution went out to every member device. */
  isComplete: boolean;
  /**
   * The latest chain position handed out: a device reached later reads from
   * there on, so a queued message sealed before it is sealed again.
   */
  readableFrom: number;
}

interface FromRecord {
  userId: string;
  key: ReceivedSenderKey;
}

interface Versioned<T> {
  record: T;
  version: number;
}

const groupKey = (chatId: string): string => `group/${chatId}`;
const keysPrefix = (chatId: string): string => `group/${chatId}/`;
const ownKey = (chatId: string, epoch: number): string => `group/${chatId}/own/${epoch}`;
const sentKey = (chatId: string, epoch: number): string => `group/${chatId}/sent/${epoch}`;
const fromKey = (chatId: string, deviceId: string, epoch: number): string =>
  `group/${chatId}/from/${deviceId}/${epoch}`;

export class GroupCodec {
  private readonly options: GroupCodecOptions;
  private server: GroupServer | undefined;
  private readonly signers = new Map<string, DeviceSigner>();
  /** Group records as last read, by chat: reused while their stored version stays (records are never changed in place). */
  private readonly groups = new Map<string, Versioned<GroupRecord>>();
  /** Groups whose chain was compared with the server's on the current connection. */
  private readonly fresh = new Set<string>();
  /** Per group and epoch: when the member devices were last compared with those the key reached. */
  private readonly coveredAtMs = new Map<string, number>();

  constructor(options: GroupCodecOptions) {
    this.options = options;
  }

  /**
   * Where to fetch operations and send distributions; unset when offline. A
   * new connection checks every group's chain and member devices again.
   */
  setServer(server: GroupServer | undefined): void {
    this.server = server;
    this.fresh.clear();
    this.coveredAtMs.clear();
  }

  /** Whether this device holds the chain of `chatId` (it is a group this device has seen). */
  async isKnownGroup(chatId: string): Promise<boolean> {
    return (await this.readGroup(chatId)) !== undefined;
  }

  /** The group as this device verified it (undefined when it has seen no operation of it). */
  async groupState(chatId: string): Promise<GroupState | undefined> {
    return (await this.readGroup(chatId))?.record.state;
  }

  // ── membership chain ─────────────────────────────────────────────────

  /**
   * A membership operation at its place in the group's sequence: verified and
   * applied (catching up from the server first when this device misses
   * earlier ones), or rejected with the reason. The caller stores the message
   * with `writes`.
   */
  async receiveOperation(message: Message): Promise<OperationOutcome> {
    const signed = message.groupOperation;
    if (signed === undefined) throw new Error("not a group operation");
    let operation: GroupOperation;
    try {
      operation = decodeOperation(signed);
    } catch (error) {
      return rejected(error);
    }
    let stored = await this.readGroup(message.chatId);
    if (stored !== undefined && message.seq <= stored.record.lastOperationSeq) {
      // Applied already, fetched ahead of the stream: it must be the very operation applied.
      const known = stored.record.recent.find((r) => r.seq === message.seq);
      if (known !== undefined && !equalBytes(known.hash, operationHash(signed.operation))) {
        return {
          kind: "rejected",
          reason: "equivocation",
          detail: `the server showed another operation at seq ${message.seq} before`,
        };
      }
      return { kind: "applied", change: this.changeOf(message, operation, stored.record.state), writes: [] };
    }
    if (stored === undefined || !equalBytes(operation.previousHash, stored.record.state.lastOperationHash)) {
      stored = await this.catchUp(message.chatId, message.seq - 1);
    }
    try {
      const record = await this.applyVerified(stored?.record, message, operation);
      return {
        kind: "applied",
        change: this.changeOf(message, operation, record.state),
        writes: [this.write(groupKey(message.chatId), stored?.version ?? 0, record)],
      };
    } catch (error) {
      return rejected(error);
    }
  }

  /**
   * Compares this device's chain with the server's head once per connection
   * (`isForced`: now) and applies what it missed (one-shot senders hear no
   * pushes). Throws NeedsServerError when offline.
   */
  async refresh(chatId: string, isForced = false): Promise<void> {
    if (this.fresh.has(chatId) && !isForced) return;
    const chat = await this.requireServer(`check group ${chatId}`).getChat(chatId);
    const head = chat.group?.lastOperationSeq ?? 0;
    const stored = await this.readGroup(chatId);
    if (stored === undefined || head > stored.record.lastOperationSeq) await this.catchUp(chatId, head);
    this.fresh.add(chatId);
  }

  /** Applies the server's operations after this device's head through `throughSeq`; stops at the first that fails. */
  private async catchUp(chatId: string, throughSeq: number): Promise<Versioned<GroupRecord> | undefined> {
    const server = this.requireServer(`fetch the operations of group ${chatId}`);
    let stored = await this.readGroup(chatId);
    let record = stored?.record;
    for (let page = 0; page < MAX_CATCH_UP_PAGES; page += 1) {
      const after = record?.lastOperationSeq ?? 0;
      if (after >= throughSeq) break;
      const operations = await server.getGroupOperations(chatId, after, OPERATIONS_PAGE);
      const usable = operations.filter((m) => m.seq > after && m.seq <= throughSeq);
      if (usable.length === 0) break;
      let isStuck = false;
      for (const message of usable) {
        const signed = message.groupOperation;
        if (signed === undefined) continue;
        try {
          record = await this.applyVerified(record, message, decodeOperation(signed));
        } catch (error) {
          if (!(error instanceof GroupOperationError)) throw error;
          // The stream shows this operation's verdict when it gets there; the chain stays at the last good one.
          isStuck = true;
          break;
        }
      }
      if (isStuck || operations.length < OPERATIONS_PAGE) break;
    }
    if (record !== undefined && record !== stored?.record) {
      await this.options.store.writeE2e([this.write(groupKey(chatId), stored?.version ?? 0, record)]);
      stored = await this.readGroup(chatId);
    }
    return stored;
  }

  /** The record after one operation (checked by the shared client rules), or a GroupOperationError. */
  private async applyVerified(
    record: GroupRecord | undefined,
    message: Message,
    operation: GroupOperation,
  ): Promise<GroupRecord> {
    const signed = message.groupOperation;
    if (signed === undefined) throw new GroupOperationError("undecodable", "not a group operation");
    const { e2e, ed25519 } = this.options;
    const checked = await checkReceivedOperations(
      message.chatId,
      record?.state,
      [{ seq: message.seq, signed, senderUserId: message.senderUserId, senderDeviceId: message.senderDeviceId }],
      async (op, proof) => {
        const identityKey = await e2e.identityKeyOf(op.actorUserId, op.actorDeviceId);
        return (
          identityKey !== undefined && ed25519.verify(identityKey, operationProof(proof.operation), proof.signature)
        );
      },
    );
    const verdict = checked.verdicts[0];
    if (verdict === undefined) throw new GroupOperationError("undecodable", "the operation was not checked");
    if (!verdict.isAccepted) throw new GroupOperationError(verdict.reason, verdict.message);
    const next = verdict.state;
    if (next.epoch !== operation.epoch) throw new GroupOperationError("wrong-epoch", "the operation's epoch moved");
    const before = new Set(record?.state.members ?? []);
    const after = new Set(next.members);
    const history = appendHistory(
      record?.history ?? EMPTY_HISTORY,
      {
        seq: message.seq,
        serverTimeMs: message.serverTimeMs,
        epoch: next.epoch,
        added: next.members.filter((m) => !before.has(m)),
        removed: [...before].filter((m) => !after.has(m)),
      },
      next.members,
    );
    const recent = [...(record?.recent ?? []), { seq: message.seq, hash: next.lastOperationHash }];
    return {
      state: next,
      history,
      lastOperationSeq: message.seq,
      recent: recent.slice(-history.entries.length),
      prunedThroughEpoch: record?.prunedThroughEpoch ?? 0,
    };
  }

  private changeOf(message: Message, operation: GroupOperation, state: GroupState): GroupChange {
    return {
      chatId: message.chatId,
      seq: message.seq,
      change: describeKind(operation.kind),
      actorUserId: operation.actorUserId,
      userIds: [...operation.userIds],
      title: state.title,
      epoch: operation.epoch,
      isRotation: startsEpoch(operation.kind),
      members: [...state.members],
      admins: [...state.admins],
    };
  }

  /**
   * Deletes the sender keys of epochs whose grace window is over at `seq` and
   * `serverTimeMs` (nothing can open with them any more).
   */
  async pruneExpired(chatId: string, seq: number, serverTimeMs: number): Promise<void> {
    const stored = await this.readGroup(chatId);
    if (stored === undefined) return;
    const writes = await this.pruneWrites(chatId, stored, seq, serverTimeMs);
    if (writes.length > 0) await this.options.store.writeE2e(writes);
  }

  /** The writes that delete the keys of epochs whose window is over at `seq`; none when no epoch is due. */
  private async pruneWrites(
    chatId: string,
    stored: Versioned<GroupRecord>,
    seq: number,
    serverTimeMs: number,
  ): Promise<E2eWrite[]> {
    const { history, prunedThroughEpoch } = stored.record;
    let through = prunedThroughEpoch;
    for (let epoch = prunedThroughEpoch + 1; epoch < history.epoch; epoch += 1) {
      const end = epochStart(history, epoch + 1);
      if (end !== undefined && isWithinWindow(end, seq, serverTimeMs, this.options.window)) break;
      through = epoch;
    }
    if (through === prunedThroughEpoch) return [];
    const { store } = this.options;
    const keys = (await store.listE2eKeys(keysPrefix(chatId))).filter((key) => {
      const epoch = Number(key.slice(key.lastIndexOf("/") + 1));
      return Number.isInteger(epoch) && epoch <= through;
    });
    const records = await store.readE2e(keys);
    for (const key of this.signers.keys()) {
      const epoch = Number(key.slice(key.lastIndexOf("/") + 1));
      if (key.startsWith(`${chatId}/`) && epoch <= through) this.signers.delete(key);
    }
    return [
      ...[...records].map(([key, r]) => ({ key, expectedVersion: r.version, value: undefined })),
      this.write(groupKey(chatId), stored.version, { ...stored.record, prunedThroughEpoch: through }),
    ];
  }

  // ── sending ────────────────────────────────────────────────────────────

  /**
   * Seals `content` once for the whole group, with this device's sender key
   * of the current epoch (made here when it has none). Throws
   * NeedsServerError when this device does not know the group yet, and
   * PERMISSION_DENIED when its user is not a member.
   */
  async seal(chatId: string, messageIdHex: string, content: Content): Promise<Sealed & { epoch: number }> {
    const stored = await this.readGroup(chatId);
    if (stored === undefined) throw new NeedsServerError(`the membership of group ${chatId} is not known yet`);
    const { state } = stored.record;
    if (!state.members.includes(this.options.userId)) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, `this user is not a member of ${chatId}`);
    }
    const own = await this.ownKey(chatId, state.epoch);
    const signer = await this.signerFor(own.record.key);
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
      writes: [this.write(ownKey(chatId, state.epoch), own.version, { ...own.record, key: sealed.key })],
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
    await this.refresh(chatId);
    const request = SendMessageRequest.decode(sealed);
    if (request.payload.length === 0) return "send"; // a pairwise control message
    const envelope = GroupEnvelope.decode(request.payload);
    const stored = await this.readGroup(chatId);
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
    await this.distribute(chatId, state.epoch, state.members);
    // Sealed before a device that got the chain from a later position: sealed again, so it reads it too.
    const sent = await this.readSent(chatId, state.epoch);
    return envelope.iteration < (sent?.record.readableFrom ?? 0) ? "reseal" : "send";
  }

  /** Hands this device's key of `epoch` to every member device it has not reached yet (checked every COVERAGE_CHECK_MS). */
  private async distribute(chatId: string, epoch: number, members: readonly string[]): Promise<void> {
    const { e2e, store, clock } = this.options;
    const coverage = `${chatId}/${epoch}`;
    let sent = await this.readSent(chatId, epoch);
    const checkedAt = this.coveredAtMs.get(coverage);
    if (sent?.record.isComplete === true && checkedAt !== undefined && clock.nowMs() - checkedAt < COVERAGE_CHECK_MS) {
      return;
    }
    const server = this.requireServer(`hand out the sender key of group ${chatId}`);
    const reached = new Set(sent?.record.deviceIds ?? []);
    const missing = (await e2e.memberDevices(members)).filter((d) => !reached.has(d.deviceId));
    let own = await this.ownKey(chatId, epoch);
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
      const sealed = await e2e.sealForMembers(chatId, messageIdHex, content, users, (id) => wanted.has(id));
      if (sealed.deviceIds.length === 0) continue; // none of them has prekeys yet: next check
      // The pairwise ratchet steps are stored before their ciphertexts leave.
      await store.writeE2e(sealed.writes);
      await server.sendMessage(SendMessageRequest.decode(sealed.sealed));
      for (const id of sealed.deviceIds) reached.add(id);
      readableFrom = Math.max(readableFrom, from.iteration);
      const record: SentRecord = { deviceIds: [...reached], isComplete: false, readableFrom };
      await store.writeE2e([this.write(sentKey(chatId, epoch), sent?.version ?? 0, record)]);
      sent = await this.readSent(chatId, epoch);
    }
    own = await this.ownKey(chatId, epoch);
    const done: SentRecord = { deviceIds: [...reached], isComplete: true, readableFrom };
    await store.writeE2e([
      this.write(sentKey(chatId, epoch), sent?.version ?? 0, done),
      this.write(ownKey(chatId, epoch), own.version, { ...own.record, origin: undefined }),
    ]);
    this.coveredAtMs.set(coverage, clock.nowMs());
  }

  /**
   * A member device lost this device's sender key (it reset the pairwise
   * session after a message it could not open): the next message hands it
   * the key again, from where the chain stands.
   */
  async forgetDistribution(chatId: string, deviceId: string): Promise<void> {
    const stored = await this.readGroup(chatId);
    if (stored === undefined) return;
    const epoch = stored.record.state.epoch;
    const sent = await this.readSent(chatId, epoch);
    this.coveredAtMs.delete(`${chatId}/${epoch}`);
    if (sent === undefined || !sent.record.deviceIds.includes(deviceId)) return;
    await this.options.store.writeE2e([
      this.write(sentKey(chatId, epoch), sent.version, {
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
    const { e2e, store, clock } = this.options;
    if (request.chatId !== chatId) return refuse("bad-request", "a request for another group's key");
    if (request.targetDeviceId !== this.options.deviceId) return refuse("bad-request", "a request to another device");
    const stored = await this.readGroup(chatId);
    if (stored === undefined) return refuse("unknown-group", "this device knows no membership of this group");
    const epoch = request.epoch;
    const verdict = judgeKeyRequest(stored.record.history, requesterUserId, epoch);
    if (!verdict.isAllowed) return refuse(verdict.reason, verdict.detail);
    const ownStored = (await store.readE2e([ownKey(chatId, epoch)])).get(ownKey(chatId, epoch));
    if (ownStored === undefined) return refuse("no-key", `this device holds no sender key of epoch ${epoch}`);
    const own = this.decode<OwnRecord>(ownKey(chatId, epoch), ownStored);
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
    const sealed = await e2e.sealForMembers(
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
    const sent = await this.readSent(chatId, epoch);
    const record: SentRecord = {
      deviceIds: [...new Set([...(sent?.record.deviceIds ?? []), requesterDeviceId])],
      isComplete: sent?.record.isComplete ?? false,
      readableFrom: Math.max(sent?.record.readableFrom ?? 0, from.iteration),
    };
    await store.writeE2e([this.write(sentKey(chatId, epoch), sent?.version ?? 0, record)]);
    return { kind: "answered", epoch, iteration: from.iteration };
  }

  // ── receiving ──────────────────────────────────────────────────────────

  /** Opens a group message (a GroupEnvelope in the shared payload) from another device. */
  async open(message: Message): Promise<GroupOpened> {
    const refuse = (reason: GroupOpenFailure, detail: string): GroupOpened => ({
      kind: "undecryptable",
      reason,
      detail,
    });
    let stored = await this.readGroup(message.chatId);
    if (stored === undefined && this.server !== undefined) stored = await this.catchUp(message.chatId, message.seq - 1);
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
    const from = record === undefined ? undefined : this.decode<FromRecord>(key, record);
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
    const pruned = await this.pruneWrites(message.chatId, stored, message.seq, message.serverTimeMs);
    return {
      kind: "content",
      content,
      writes: [this.write(key, record?.version ?? 0, { ...from, key: opened.key }), ...pruned],
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
    const stored = await this.readGroup(message.chatId);
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
    return { kind: "accepted", writes: [this.write(key, 0, record)] };
  }

  /** Whether `userId` was a member of `chatId` during `epoch` (as this device verified it). */
  async wasMemberDuring(chatId: string, epoch: number, userId: string): Promise<boolean> {
    const stored = await this.readGroup(chatId);
    return stored !== undefined && isMemberDuring(stored.record.history, epoch, userId);
  }

  // ── records ────────────────────────────────────────────────────────────

  private async ownKey(chatId: string, epoch: number): Promise<Versioned<OwnRecord>> {
    const key = ownKey(chatId, epoch);
    const stored = (await this.options.store.readE2e([key])).get(key);
    if (stored !== undefined) return { record: this.decode<OwnRecord>(key, stored), version: stored.version };
    // A new key: stored with the first message sealed with it (or not at all).
    const made = await createOwnSenderKey(this.options.ed25519, chatId, epoch);
    this.remember(made.key, made.signer);
    return {
      record: { key: made.key, origin: { iteration: made.key.iteration, chainKey: made.key.chainKey } },
      version: 0,
    };
  }

  private async signerFor(key: OwnSenderKey): Promise<DeviceSigner> {
    const name = `${key.chatId}/${key.epoch}`;
    const cached = this.signers.get(name);
    if (cached !== undefined && equalBytes(cached.publicKey, key.signingKey)) return cached;
    const signer = await this.options.ed25519.signerFromSeed(key.signingSeed);
    this.remember(key, signer);
    return signer;
  }

  private remember(key: OwnSenderKey, signer: DeviceSigner): void {
    const name = `${key.chatId}/${key.epoch}`;
    this.signers.delete(name);
    if (this.signers.size >= MAX_SIGNERS) {
      const oldest = this.signers.keys().next();
      if (oldest.done !== true) this.signers.delete(oldest.value);
    }
    this.signers.set(name, signer);
  }

  /** The group's record; decrypted and parsed only when its version moved (a large group's is large). */
  private async readGroup(chatId: string): Promise<Versioned<GroupRecord> | undefined> {
    const key = groupKey(chatId);
    const stored = (await this.options.store.readE2e([key])).get(key);
    if (stored === undefined) return undefined;
    const cached = this.groups.get(chatId);
    if (cached?.version === stored.version) return cached;
    const read = { record: this.decode<GroupRecord>(key, stored), version: stored.version };
    this.groups.delete(chatId);
    if (this.groups.size >= MAX_CACHED_GROUPS) {
      const oldest = this.groups.keys().next();
      if (oldest.done !== true) this.groups.delete(oldest.value);
    }
    this.groups.set(chatId, read);
    return read;
  }

  private async readSent(chatId: string, epoch: number): Promise<Versioned<SentRecord> | undefined> {
    const key = sentKey(chatId, epoch);
    const stored = (await this.options.store.readE2e([key])).get(key);
    return stored === undefined ? undefined : { record: this.decode<SentRecord>(key, stored), version: stored.version };
  }

  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the key names what the record holds
  private decode<T>(key: string, stored: E2eRecord): T {
    return openRecord<T>(this.options.storageKey, key, stored.value);
  }

  private write(key: string, expectedVersion: number, value: unknown): E2eWrite {
    return { key, expectedVersion, value: sealRecord(this.options.storageKey, key, value) };
  }

  private requireServer(what: string): GroupServer {
    if (this.server === undefined) throw new NeedsServerError(`the server is needed to ${what}`);
    return this.server;
  }
}

function rejected(error: unknown): OperationOutcome {
  if (error instanceof GroupOperationError) {
    return { kind: "rejected", reason: error.reason, detail: error.message };
  }
  throw error;
}
