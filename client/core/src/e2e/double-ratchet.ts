/**
 * The Double Ratchet with header encryption (Signal's spec, revision 4, §3 and
 * §4), as a pure state machine: every step takes a state and returns a new
 * one, and never changes its input. A caller that fails to persist the new
 * state (a crash, a lost race with another process) still holds the old one,
 * and a failed decryption changes nothing at all.
 *
 * Invariants:
 * - A fresh message key for every message (KDF chains, HMAC-SHA256); a DH
 *   ratchet step (X25519) each time the speaking side changes.
 * - Headers (ratchet public key, PN, N) are encrypted with the header keys, so
 *   whoever carries the message sees neither ratchet keys nor counters.
 * - A message key is used once: after decryption it is in no state returned,
 *   so a replay fails, and a snapshot taken afterwards cannot decrypt it again
 *   (forward secrecy).
 * - Skipped keys (out-of-order delivery) are bounded: at most
 *   MAX_SKIP_PER_CHAIN ahead in one chain, at most MAX_SKIPPED_KEYS kept, each
 *   for at most SKIPPED_KEY_LIFETIME_MS.
 * - The caller's associated data (the routing header and the session's
 *   identities) and the encrypted header are bound to each message body.
 *
 * Wire form of a message: encrypted header (HEADER_BOX_BYTES: nonce, header,
 * tag) || body (ciphertext, tag).
 */
import {
  aeadOpen,
  aeadOpenRandomNonce,
  aeadSeal,
  aeadSealRandomNonce,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  concat,
  equalBytes,
  hkdfSha256,
  hmacSha256Each,
  type X25519KeyPair,
  type X25519Provider,
  ErrorCode,
  RemessengerError,
} from "@remessenger/protocol";

/** Most message keys one chain may skip at once (a gap of more is refused). */
export const MAX_SKIP_PER_CHAIN = 2000;
/** Most skipped message keys a session keeps; the oldest go first. */
export const MAX_SKIPPED_KEYS = 2000;
/** A skipped message key is dropped after this long (the message is considered lost). */
export const SKIPPED_KEY_LIFETIME_MS = 30 * 24 * 60 * 60 * 1000;

const HEADER_BYTES = 40;
export const HEADER_BOX_BYTES = AEAD_NONCE_BYTES + HEADER_BYTES + AEAD_TAG_BYTES;
const ZERO_SALT = new Uint8Array(32);
const ROOT_INFO = new TextEncoder().encode("remessenger/v1/ratchet-root");
const MESSAGE_INFO = new TextEncoder().encode("remessenger/v1/ratchet-message");
const CHAIN_MESSAGE = Uint8Array.of(1);
const CHAIN_NEXT = Uint8Array.of(2);

export interface SkippedKey {
  headerKey: Uint8Array;
  n: number;
  messageKey: Uint8Array;
  storedAtMs: number;
}

export interface RatchetState {
  rootKey: Uint8Array;
  /** DHs: our current ratchet key pair. */
  self: X25519KeyPair;
  /** DHr: the peer's current ratchet public key. */
  remote: Uint8Array | undefined;
  sendChain: Uint8Array | undefined;
  receiveChain: Uint8Array | undefined;
  sendHeaderKey: Uint8Array | undefined;
  receiveHeaderKey: Uint8Array | undefined;
  nextSendHeaderKey: Uint8Array;
  nextReceiveHeaderKey: Uint8Array;
  sendCount: number;
  receiveCount: number;
  previousSendCount: number;
  skipped: SkippedKey[];
}

/** Why a message did not decrypt; the state is unchanged. */
export type RatchetFailure =
  | "malformed" // too short to be a message
  | "unknown-header" // no header key opens it: another session, or tampered
  | "replay" // its key was used already (or expired)
  | "too-far-ahead" // more than MAX_SKIP_PER_CHAIN messages skipped
  | "bad-body" // header fine, body (or associated data) does not authenticate
  | "bad-key"; // the peer's ratchet key is unusable (small order)

export class RatchetError extends RemessengerError {
  override readonly name = "RatchetError";
  readonly reason: RatchetFailure;
  constructor(reason: RatchetFailure, message: string) {
    super(ErrorCode.ERROR_CODE_UNDECRYPTABLE, message);
    this.reason = reason;
  }
}

export interface RatchetDeps {
  x25519: X25519Provider;
  /** Clock for skipped-key lifetimes. */
  nowMs: number;
  random?: (n: number) => Uint8Array;
}

interface Header {
  dh: Uint8Array;
  pn: number;
  n: number;
}

/** The side that starts: knows the peer's ratchet key (its signed prekey) from the setup. */
export async function initSender(
  x25519: X25519Provider,
  sharedKey: Uint8Array,
  peerRatchetKey: Uint8Array,
  sharedHeaderKeyA: Uint8Array,
  sharedNextHeaderKeyB: Uint8Array,
): Promise<RatchetState> {
  const self = await x25519.generateKeyPair();
  const [rootKey, sendChain, nextSendHeaderKey] = kdfRoot(
    sharedKey,
    await x25519.sharedSecret(self.privateKey, peerRatchetKey),
  );
  return {
    rootKey,
    self,
    remote: peerRatchetKey,
    sendChain,
    receiveChain: undefined,
    sendHeaderKey: sharedHeaderKeyA,
    receiveHeaderKey: undefined,
    nextSendHeaderKey,
    nextReceiveHeaderKey: sharedNextHeaderKeyB,
    sendCount: 0,
    receiveCount: 0,
    previousSendCount: 0,
    skipped: [],
  };
}

/** The side that answers: its ratchet key pair is the signed prekey the sender used. */
export function initReceiver(
  sharedKey: Uint8Array,
  ownRatchetKey: X25519KeyPair,
  sharedHeaderKeyA: Uint8Array,
  sharedNextHeaderKeyB: Uint8Array,
): RatchetState {
  return {
    rootKey: sharedKey,
    self: ownRatchetKey,
    remote: undefined,
    sendChain: undefined,
    receiveChain: undefined,
    sendHeaderKey: undefined,
    receiveHeaderKey: undefined,
    nextSendHeaderKey: sharedNextHeaderKeyB,
    nextReceiveHeaderKey: sharedHeaderKeyA,
    sendCount: 0,
    receiveCount: 0,
    previousSendCount: 0,
    skipped: [],
  };
}

/** Whether this state can send (the answering side can only after its first message in). */
export function canSend(state: RatchetState): boolean {
  return state.sendChain !== undefined && state.sendHeaderKey !== undefined;
}

/** Encrypts one message; `associatedData` is authenticated, not sent. */
export function ratchetEncrypt(
  state: RatchetState,
  plaintext: Uint8Array,
  associatedData: Uint8Array,
  random?: (n: number) => Uint8Array,
): { state: RatchetState; message: Uint8Array } {
  if (state.sendChain === undefined || state.sendHeaderKey === undefined) {
    throw new Error("this session cannot send before it received a message");
  }
  const [sendChain, messageKey] = kdfChain(state.sendChain);
  const header = encodeHeader({ dh: state.self.publicKey, pn: state.previousSendCount, n: state.sendCount });
  const headerBox = aeadSealRandomNonce(state.sendHeaderKey, header, undefined, random);
  const body = sealBody(messageKey, plaintext, concat(associatedData, headerBox));
  return {
    state: { ...state, sendChain, sendCount: state.sendCount + 1 },
    message: concat(headerBox, body),
  };
}

/**
 * Decrypts one message. Resolves with the new state and the plaintext, or
 * rejects with a RatchetError (the input state stays valid).
 */
export async function ratchetDecrypt(
  state: RatchetState,
  message: Uint8Array,
  associatedData: Uint8Array,
  deps: RatchetDeps,
): Promise<{ state: RatchetState; plaintext: Uint8Array }> {
  if (message.length < HEADER_BOX_BYTES + AEAD_TAG_BYTES) {
    throw new RatchetError("malformed", `a ratchet message has at least ${HEADER_BOX_BYTES + AEAD_TAG_BYTES} bytes`);
  }
  const headerBox = message.subarray(0, HEADER_BOX_BYTES);
  const body = message.subarray(HEADER_BOX_BYTES);
  const ad = concat(associatedData, headerBox);
  const live = state.skipped.filter((k) => deps.nowMs - k.storedAtMs <= SKIPPED_KEY_LIFETIME_MS);

  // A skipped key first: a late message of an earlier chain or position. The
  // header is opened once per distinct header key, not once per stored key.
  const tried: Uint8Array[] = [];
  for (const entry of live) {
    if (tried.some((key) => equalBytes(key, entry.headerKey))) continue;
    tried.push(entry.headerKey);
    const header = openHeader(entry.headerKey, headerBox);
    if (header === undefined) continue;
    const index = live.findIndex((k) => k.n === header.n && equalBytes(k.headerKey, entry.headerKey));
    const found = live[index];
    if (found === undefined) break; // opened, but its key is not stored: handled below
    const plaintext = openBody(found.messageKey, body, ad);
    if (plaintext === undefined) throw new RatchetError("bad-body", "the message body does not authenticate");
    return { state: { ...state, skipped: live.filter((_, j) => j !== index) }, plaintext };
  }

  let next: RatchetState = { ...state, skipped: live };
  let header = state.receiveHeaderKey === undefined ? undefined : openHeader(state.receiveHeaderKey, headerBox);
  if (header === undefined) {
    header = openHeader(state.nextReceiveHeaderKey, headerBox);
    if (header === undefined) {
      throw new RatchetError("unknown-header", "no header key of this session opens the message");
    }
    next = skipKeys(next, header.pn, deps.nowMs);
    next = await dhRatchet(next, header.dh, deps.x25519);
  } else if (header.n < next.receiveCount) {
    throw new RatchetError("replay", `message ${header.n} of this chain was decrypted already or has expired`);
  }
  next = skipKeys(next, header.n, deps.nowMs);
  if (next.receiveChain === undefined) throw new RatchetError("unknown-header", "no receiving chain");
  const [receiveChain, messageKey] = kdfChain(next.receiveChain);
  const plaintext = openBody(messageKey, body, ad);
  if (plaintext === undefined) throw new RatchetError("bad-body", "the message body does not authenticate");
  return { state: { ...next, receiveChain, receiveCount: next.receiveCount + 1 }, plaintext };
}

function skipKeys(state: RatchetState, until: number, nowMs: number): RatchetState {
  if (until <= state.receiveCount) return state;
  if (until - state.receiveCount > MAX_SKIP_PER_CHAIN) {
    throw new RatchetError("too-far-ahead", `more than ${MAX_SKIP_PER_CHAIN} messages skipped in one chain`);
  }
  if (state.receiveChain === undefined || state.receiveHeaderKey === undefined) return state;
  let chain = state.receiveChain;
  const added: SkippedKey[] = [];
  for (let n = state.receiveCount; n < until; n += 1) {
    const [nextChain, messageKey] = kdfChain(chain);
    added.push({ headerKey: state.receiveHeaderKey, n, messageKey, storedAtMs: nowMs });
    chain = nextChain;
  }
  const skipped = [...state.skipped, ...added];
  return {
    ...state,
    receiveChain: chain,
    receiveCount: until,
    skipped: skipped.length > MAX_SKIPPED_KEYS ? skipped.slice(skipped.length - MAX_SKIPPED_KEYS) : skipped,
  };
}

async function dhRatchet(state: RatchetState, remote: Uint8Array, x25519: X25519Provider): Promise<RatchetState> {
  let received: Uint8Array;
  let sent: Uint8Array;
  const self = await x25519.generateKeyPair();
  try {
    received = await x25519.sharedSecret(state.self.privateKey, remote);
    sent = await x25519.sharedSecret(self.privateKey, remote);
  } catch (cause) {
    throw new RatchetError("bad-key", `the peer's ratchet key is unusable: ${String(cause)}`);
  }
  const [rootA, receiveChain, nextReceiveHeaderKey] = kdfRoot(state.rootKey, received);
  const [rootKey, sendChain, nextSendHeaderKey] = kdfRoot(rootA, sent);
  return {
    ...state,
    previousSendCount: state.sendCount,
    sendCount: 0,
    receiveCount: 0,
    sendHeaderKey: state.nextSendHeaderKey,
    receiveHeaderKey: state.nextReceiveHeaderKey,
    remote,
    rootKey,
    receiveChain,
    nextReceiveHeaderKey,
    self,
    sendChain,
    nextSendHeaderKey,
  };
}

/** KDF_RK_HE: root key, chain key, next header key. */
function kdfRoot(rootKey: Uint8Array, dhOutput: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  const out = hkdfSha256(dhOutput, rootKey, ROOT_INFO, 96);
  return [out.slice(0, 32), out.slice(32, 64), out.slice(64, 96)];
}

/** KDF_CK: next chain key, message key. */
function kdfChain(chainKey: Uint8Array): [Uint8Array, Uint8Array] {
  const [next, message] = hmacSha256Each(chainKey, [CHAIN_NEXT, CHAIN_MESSAGE]);
  if (next === undefined || message === undefined) throw new Error("HMAC gave no output");
  return [next, message];
}

function bodyKeys(messageKey: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const out = hkdfSha256(messageKey, ZERO_SALT, MESSAGE_INFO, 32 + AEAD_NONCE_BYTES);
  return { key: out.subarray(0, 32), nonce: out.subarray(32) };
}

function sealBody(messageKey: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Uint8Array {
  const { key, nonce } = bodyKeys(messageKey);
  return aeadSeal(key, nonce, plaintext, ad);
}

function openBody(messageKey: Uint8Array, body: Uint8Array, ad: Uint8Array): Uint8Array | undefined {
  const { key, nonce } = bodyKeys(messageKey);
  return aeadOpen(key, nonce, body, ad);
}

function encodeHeader(header: Header): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  out.set(header.dh);
  const view = new DataView(out.buffer);
  view.setUint32(32, header.pn);
  view.setUint32(36, header.n);
  return out;
}

function openHeader(headerKey: Uint8Array, box: Uint8Array): Header | undefined {
  const bytes = aeadOpenRandomNonce(headerKey, box);
  if (bytes?.length !== HEADER_BYTES) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { dh: bytes.slice(0, 32), pn: view.getUint32(32), n: view.getUint32(36) };
}
