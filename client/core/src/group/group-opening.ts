/**
 * Opening what other member devices send in a group: a group message (a
 * GroupEnvelope in the shared payload) with the sender's key of its epoch,
 * and a sender key handed over pairwise. GroupSessions runs these under the
 * E2E lock and stores the result with the received row.
 *
 * Invariants:
 * - The epoch rules judge first (seq and server time: every member decides
 *   alike), then the signature is verified, then the message decrypted; every
 *   refusal is a reason, never a silent drop.
 * - A sender key is kept only when its sender may send in that epoch at this
 *   place of the sequence and this user was a member then; a key this device
 *   holds already is kept as it is (never moved back).
 * - Keys of epochs whose window a message closed are deleted in the same
 *   transaction as the message.
 * - A sender key that arrives pairwise is kept (its write goes with the
 *   message) and the content as stored carries no chain key.
 */
import { Content, GroupEnvelope, type Message, type SenderKeyDistribution } from "@remessenger/protocol";
import type { Ed25519Provider } from "../crypto/device-signer.ts";
import type { PairwiseSessions } from "../e2e/pairwise-sessions.ts";
import type { OpenedMessage } from "../e2e/received-commits.ts";
import type { ClientStore, E2eWrite } from "../store/client-store.ts";
import { type EpochFailure, type GraceWindow, judgeGroupMessage } from "./epoch-window.ts";
import type { GroupChain } from "./group-chain.ts";
import { type FromRecord, type GroupRecords, fromKey } from "./group-records.ts";
import {
  type ReceivedSenderKey,
  SenderKeyError,
  type SenderKeyFailure,
  groupRoute,
  openGroupMessage,
  receiveDistribution,
} from "./sender-key.ts";

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

/** What opening needs: this user, the records and chain of the group layer, the grace window. */
export interface GroupOpeningDeps {
  userId: string;
  store: ClientStore;
  records: GroupRecords;
  chain: GroupChain;
  ed25519: Ed25519Provider;
  window: GraceWindow;
}

/** Opens a group message from another device. */
export async function openGroup(deps: GroupOpeningDeps, message: Message): Promise<GroupOpened> {
  const { records, chain } = deps;
  const refuse = (reason: GroupOpenFailure, detail: string): GroupOpened => ({
    kind: "undecryptable",
    reason,
    detail,
  });
  let stored = await records.readGroup(message.chatId);
  if (stored === undefined && chain.isOnline) stored = await chain.catchUp(message.chatId, message.seq - 1);
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
    deps.userId,
    deps.window,
  );
  if (!verdict.isAccepted) return refuse(verdict.reason, verdict.detail);
  const key = fromKey(message.chatId, message.senderDeviceId, envelope.epoch);
  const record = (await deps.store.readE2e([key])).get(key);
  const from = record === undefined ? undefined : records.decode<FromRecord>(key, record);
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
      deps.ed25519,
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
  const pruned = await chain.pruneWrites(message.chatId, stored, message.seq, message.serverTimeMs);
  return {
    kind: "content",
    content,
    writes: [records.write(key, record?.version ?? 0, { ...from, key: opened.key }), ...pruned],
    isGrace: verdict.isGrace,
  };
}

/**
 * A sender key another member device handed this one (opened from the
 * pairwise session, so `message.senderDeviceId` is authenticated).
 */
export async function acceptDistribution(
  deps: GroupOpeningDeps,
  message: Message,
  distribution: SenderKeyDistribution,
): Promise<DistributionOutcome> {
  const stored = await deps.records.readGroup(message.chatId);
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
    deps.userId,
    deps.window,
  );
  if (!verdict.isAccepted) return { kind: "rejected", reason: verdict.reason, detail: verdict.detail };
  const key = fromKey(message.chatId, message.senderDeviceId, distribution.epoch);
  if ((await deps.store.readE2e([key])).has(key)) return { kind: "accepted", writes: [] };
  let received: ReceivedSenderKey;
  try {
    received = receiveDistribution(message.senderDeviceId, distribution);
  } catch (error) {
    return { kind: "rejected", reason: "bad-distribution", detail: (error as Error).message };
  }
  const record: FromRecord = { userId: message.senderUserId, key: received };
  return { kind: "accepted", writes: [deps.records.write(key, 0, record)] };
}

/** What opening any message from another device needs besides the group's parts. */
export interface DeviceOpeningDeps extends GroupOpeningDeps {
  pairwise: PairwiseSessions;
  isKnownGroup(chatId: string): Promise<boolean>;
}

/**
 * Opens a message from another device: a group envelope with the sender's
 * key, anything else pairwise. A group's pairwise message for other devices
 * is a control message for them.
 */
export async function openFromDevice(deps: DeviceOpeningDeps, message: Message): Promise<OpenedMessage> {
  if (message.payload.length > 0) {
    const opened = await openGroup(deps, message);
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
  const opened = await deps.pairwise.open(message);
  if (opened.kind === "undecryptable") {
    if (opened.reason === "not-for-this-device" && (await deps.isKnownGroup(message.chatId))) {
      return { kind: "control" };
    }
    return opened;
  }
  const body = opened.content.body;
  if (body?.$case !== "senderKey") return opened;
  const accepted = await acceptDistribution(deps, message, body.value);
  if (accepted.kind === "rejected") {
    return { kind: "undecryptable", reason: accepted.reason, detail: accepted.detail, canHeal: false };
  }
  const stripped: Content = {
    ...opened.content,
    body: { $case: "senderKey", value: { ...body.value, chainKey: new Uint8Array(0) } },
  };
  return { kind: "content", content: stripped, writes: [...opened.writes, ...accepted.writes] };
}
