/**
 * Pairwise end-to-end sessions between two devices, as pure functions over a
 * `SessionRecord` (the sessions this device holds with one peer device):
 * starting one from a prekey bundle, sealing a plaintext into an
 * `E2eEnvelope`, opening one. No storage and no network here; the payload
 * sessions (e2e/pairwise-sessions.ts) persists records and fetches bundles.
 *
 * Invariants:
 * - Plaintexts are padded to size buckets before encryption.
 * - Each message's associated data is the session's (both identities) plus
 *   the caller's routing header, so a ciphertext moved to another chat,
 *   message id, sender or recipient device does not open.
 * - The initiator sends prekey messages (setup fields + ratchet message) until
 *   the first message from the responder arrives in that session.
 * - A record keeps its current session and up to MAX_PREVIOUS_SESSIONS older
 *   ones: messages still in flight in an old session open, and a session that
 *   receives becomes current again, so two devices that both started a
 *   session at once settle on one.
 * - Nothing changes on failure: a rejected envelope leaves the record as it was.
 */
import {
  E2eEnvelope,
  type PreKeyBundle,
  type PreKeyMessage,
  concat,
  equalBytes,
  ErrorCode,
  RemessengerError,
} from "@remessenger/protocol";
import { RatchetError, type RatchetFailure, ratchetDecrypt, ratchetEncrypt } from "./double-ratchet.ts";
import { pad, unpad } from "./padding.ts";
import {
  type DeviceIdentity,
  type PendingPreKey,
  type ResponderKeys,
  type SetupDeps,
  SetupError,
  type SetupResult,
  acceptSession,
  initiateSession,
} from "./session-setup.ts";

export const MAX_PREVIOUS_SESSIONS = 4;

export interface PeerSession extends SetupResult {
  /** Set on the initiator until the responder's first message arrives. */
  pending: PendingPreKey | undefined;
  /** The peer device's Ed25519 identity key. */
  peerIdentityKey: Uint8Array;
  createdAtMs: number;
}

export interface SessionRecord {
  current: PeerSession | undefined;
  previous: PeerSession[];
}

export const EMPTY_RECORD: SessionRecord = { current: undefined, previous: [] };

/** Why an envelope did not open: shown to the user as the message's undecryptable reason. */
export type OpenFailure =
  | RatchetFailure
  | "no-session" // a ratchet message, and this device holds no session that opens it
  | "bad-setup" // a prekey message whose signature, keys or prekeys do not work
  | "bad-padding"
  | "undecodable";

export class OpenError extends RemessengerError {
  override readonly name = "OpenError";
  readonly reason: OpenFailure;
  constructor(reason: OpenFailure, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_UNDECRYPTABLE, message, options);
    this.reason = reason;
  }
}

export interface OpenDeps extends SetupDeps {
  nowMs: number;
}

/** The one-time prekeys a successful open used up (the caller deletes them with the new record). */
export interface ConsumedPreKeys {
  oneTimePreKeyId: number | undefined;
  pqPreKeyId: number | undefined;
}

/** A new session from the peer's bundle; it becomes the record's current one. */
export async function startSession(
  deps: SetupDeps,
  own: DeviceIdentity,
  record: SessionRecord,
  bundle: PreKeyBundle,
  nowMs: number,
): Promise<SessionRecord> {
  const setup = await initiateSession(deps, own, bundle);
  const session: PeerSession = {
    ratchet: setup.ratchet,
    associatedData: setup.associatedData,
    baseKey: setup.baseKey,
    pending: setup.pending,
    peerIdentityKey: bundle.identityKey,
    createdAtMs: nowMs,
  };
  return promote(record, session);
}

/** Encrypts for the peer with the current session. Throws when there is none. */
export function sealEnvelope(
  own: DeviceIdentity,
  record: SessionRecord,
  plaintext: Uint8Array,
  routing: Uint8Array,
): { record: SessionRecord; envelope: Uint8Array } {
  const session = record.current;
  if (session === undefined) throw new Error("no session with this device");
  const sealed = ratchetEncrypt(session.ratchet, pad(plaintext), concat(session.associatedData, routing));
  const next: SessionRecord = { ...record, current: { ...session, ratchet: sealed.state } };
  const { pending } = session;
  const envelope: E2eEnvelope =
    pending === undefined
      ? { body: { $case: "ratchet", value: sealed.message } }
      : {
          body: {
            $case: "preKey",
            value: {
              identityKey: own.signer.publicKey,
              identityDhKey: own.dh.publicKey,
              identityDhSignature: own.dhSignature,
              baseKey: pending.baseKey,
              signedPreKeyId: pending.signedPreKeyId,
              hasOneTimePreKey: pending.oneTimePreKeyId !== undefined,
              oneTimePreKeyId: pending.oneTimePreKeyId ?? 0,
              pqPreKeyId: pending.pqPreKeyId,
              pqCiphertext: pending.pqCiphertext,
              ratchet: sealed.message,
            },
          },
        };
  return { record: next, envelope: E2eEnvelope.encode(envelope).finish() };
}

/**
 * Decrypts an envelope from the peer. `keysFor` finds our private prekeys for
 * a prekey message (rejecting with SetupError when one is gone).
 */
export async function openEnvelope(
  deps: OpenDeps,
  own: DeviceIdentity,
  record: SessionRecord,
  bytes: Uint8Array,
  routing: Uint8Array,
  keysFor: (message: PreKeyMessage) => Promise<ResponderKeys>,
): Promise<{ record: SessionRecord; plaintext: Uint8Array; consumed: ConsumedPreKeys; peerIdentityKey: Uint8Array }> {
  let envelope: E2eEnvelope;
  try {
    envelope = E2eEnvelope.decode(bytes);
  } catch (cause) {
    throw new OpenError("undecodable", "the payload is not an E2E envelope", { cause });
  }
  const body = envelope.body;
  if (body === undefined) throw new OpenError("undecodable", "the envelope is empty");
  const none: ConsumedPreKeys = { oneTimePreKeyId: undefined, pqPreKeyId: undefined };
  if (body.$case === "ratchet") {
    const sessions = [record.current, ...record.previous].filter((s) => s !== undefined);
    if (sessions.length === 0) throw new OpenError("no-session", "no session with this device");
    for (const session of sessions) {
      try {
        const opened = await openWith(deps, session, body.value, routing);
        return {
          record: promote(record, opened.session),
          plaintext: opened.plaintext,
          consumed: none,
          peerIdentityKey: session.peerIdentityKey,
        };
      } catch (error) {
        if (!(error instanceof RatchetError)) throw error;
        // Another session's message: try the next. Anything else is this message's verdict.
        if (error.reason !== "unknown-header") throw new OpenError(error.reason, error.message);
      }
    }
    throw new OpenError("no-session", "no session with this device opens the message (it may have been reset)");
  }
  const message = body.value;
  const known = [record.current, ...record.previous].find(
    (s) => s !== undefined && equalBytes(s.baseKey, message.baseKey),
  );
  if (known !== undefined) {
    // The initiator repeats its setup until we answer: the session exists already.
    const opened = await openWith(deps, known, message.ratchet, routing).catch((error: unknown) => {
      throw error instanceof RatchetError ? new OpenError(error.reason, error.message) : error;
    });
    return {
      record: promote(record, opened.session),
      plaintext: opened.plaintext,
      consumed: none,
      peerIdentityKey: known.peerIdentityKey,
    };
  }
  let setup: SetupResult;
  let keys: ResponderKeys;
  try {
    keys = await keysFor(message);
    setup = await acceptSession(deps, own, message, keys);
  } catch (error) {
    if (error instanceof SetupError) throw new OpenError("bad-setup", error.message, { cause: error });
    throw error;
  }
  const session: PeerSession = {
    ...setup,
    pending: undefined,
    peerIdentityKey: message.identityKey,
    createdAtMs: deps.nowMs,
  };
  const opened = await openWith(deps, session, message.ratchet, routing).catch((error: unknown) => {
    throw error instanceof RatchetError
      ? new OpenError("bad-setup", `the setup does not open its message: ${error.message}`)
      : error;
  });
  return {
    record: promote(record, opened.session),
    plaintext: opened.plaintext,
    consumed: {
      oneTimePreKeyId: message.hasOneTimePreKey ? message.oneTimePreKeyId : undefined,
      pqPreKeyId: message.pqPreKeyId,
    },
    peerIdentityKey: message.identityKey,
  };
}

async function openWith(
  deps: OpenDeps,
  session: PeerSession,
  message: Uint8Array,
  routing: Uint8Array,
): Promise<{ session: PeerSession; plaintext: Uint8Array }> {
  const opened = await ratchetDecrypt(session.ratchet, message, concat(session.associatedData, routing), {
    x25519: deps.x25519,
    nowMs: deps.nowMs,
  });
  let plaintext: Uint8Array;
  try {
    plaintext = unpad(opened.plaintext);
  } catch (cause) {
    throw new OpenError("bad-padding", "the decrypted message is not padded correctly", { cause });
  }
  // A message from the peer in this session: it has the session, prekey messages can stop.
  return { session: { ...session, ratchet: opened.state, pending: undefined }, plaintext };
}

/** `session` becomes current; the others (without its older copy) are kept, newest first. */
function promote(record: SessionRecord, session: PeerSession): SessionRecord {
  const others = [record.current, ...record.previous].filter(
    (s): s is PeerSession => s !== undefined && !equalBytes(s.baseKey, session.baseKey),
  );
  return { current: session, previous: others.slice(0, MAX_PREVIOUS_SESSIONS) };
}
