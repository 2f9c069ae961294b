/**
 * Opening a pairwise envelope: this device's payload of a received message,
 * decrypted with the session of the sending device (or a new one from a
 * prekey message). PairwiseSessions.open runs it; the caller stores the
 * message with the writes (the ratchet step, the used one-time prekey) in
 * one transaction, under the E2E lock.
 *
 * Invariants:
 * - A failure comes back as a reason, never as a silent drop; only a replay
 *   cannot heal by a new session, and neither can a message signed by a key
 *   the directory does not list for the sending device.
 * - A one-time prekey's private key goes with the message that used it: it
 *   can never set up a second session.
 */
import { Content, type Message, equalBytes } from "@remessenger/protocol";
import type { Clock } from "../runtime/clock.ts";
import type { E2eStateStore, E2eWrite } from "../store/client-store.ts";
import type { DeviceDirectory } from "./device-directory.ts";
import { sealRecord } from "./e2e-records.ts";
import { EMPTY_RECORD, OpenError, type OpenFailure, openEnvelope } from "./e2e-session.ts";
import { decodeSession, routingHeader, sessionKey, sessionWrite } from "./pairwise-records.ts";
import { type LocalPreKeys, PREKEYS_KEY, type PreKeyUpkeep, responderKeys } from "./prekey-upkeep.ts";
import type { DeviceIdentity, SetupDeps } from "./session-setup.ts";

export type Opened =
  | { kind: "content"; content: Content; writes: E2eWrite[] }
  | {
      kind: "undecryptable";
      reason: OpenFailure | "not-for-this-device" | "identity-mismatch";
      detail: string;
      canHeal: boolean;
    };

export interface PairwiseOpenDeps {
  deviceId: string;
  storageKey: Uint8Array;
  store: E2eStateStore;
  identity: DeviceIdentity;
  clock: Clock;
  setup: SetupDeps;
  preKeys: PreKeyUpkeep;
  directory: DeviceDirectory;
}

/** Opens this device's envelope of a received message. */
export async function openPairwise(deps: PairwiseOpenDeps, message: Message): Promise<Opened> {
  const { deviceId, store, storageKey } = deps;
  const mine = message.devicePayloads.find((p) => p.deviceId === deviceId);
  if (mine === undefined) {
    return {
      kind: "undecryptable",
      reason: "not-for-this-device",
      detail: "the sender encrypted nothing for this device",
      canHeal: true,
    };
  }
  const sender = message.senderDeviceId;
  const keys = [sessionKey(sender), PREKEYS_KEY];
  const stored = await store.readE2e(keys);
  const sessionRecord = stored.get(sessionKey(sender));
  const prekeysRecord = stored.get(PREKEYS_KEY);
  const record = sessionRecord === undefined ? EMPTY_RECORD : decodeSession(storageKey, sender, sessionRecord);
  const local = prekeysRecord === undefined ? undefined : deps.preKeys.decode(prekeysRecord);
  let opened;
  try {
    opened = await openEnvelope(
      { ...deps.setup, nowMs: deps.clock.nowMs() },
      deps.identity,
      record,
      mine.ciphertext,
      routingHeader(message.chatId, message.messageId, sender, deviceId),
      (prekeyMessage) => Promise.resolve(responderKeys(local, prekeyMessage)),
    );
  } catch (error) {
    if (!(error instanceof OpenError)) throw error;
    return { kind: "undecryptable", reason: error.reason, detail: error.message, canHeal: error.reason !== "replay" };
  }
  const known = await deps.directory.knownDevice(message.senderUserId, sender);
  if (known === undefined || !equalBytes(known.identityKey, opened.peerIdentityKey)) {
    return {
      kind: "undecryptable",
      reason: "identity-mismatch",
      detail: `the message is signed by a key the server does not list for device ${sender}`,
      canHeal: false,
    };
  }
  let content: Content;
  try {
    content = Content.decode(opened.plaintext);
  } catch {
    return {
      kind: "undecryptable",
      reason: "undecodable",
      detail: "the decrypted content is not a Content",
      canHeal: false,
    };
  }
  const writes = [sessionWrite(storageKey, sender, sessionRecord?.version ?? 0, opened.record)];
  const { oneTimePreKeyId } = opened.consumed;
  if (oneTimePreKeyId !== undefined && local !== undefined && prekeysRecord !== undefined) {
    // The one-time private key goes with the message that used it: it can never set up a second session.
    const next: LocalPreKeys = { ...local, oneTime: local.oneTime.filter((k) => k.id !== oneTimePreKeyId) };
    writes.push({
      key: PREKEYS_KEY,
      expectedVersion: prekeysRecord.version,
      value: sealRecord(storageKey, PREKEYS_KEY, next),
    });
  }
  return { kind: "content", content, writes };
}
