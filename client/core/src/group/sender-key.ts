/**
 * Sender Keys: how one device's group messages are encrypted once for every
 * member and signed, as pure functions over plain state (Signal's Sender Key
 * construction, with XChaCha20-Poly1305 and Ed25519 signatures).
 *
 * Per group, per epoch and per member device there is one sender key: a
 * symmetric chain (HMAC-SHA256, like the Double Ratchet's sending chain) and
 * an Ed25519 signing key pair. The device keeps the whole key (`OwnSenderKey`);
 * every other member device holds its public half and the chain from the
 * position it was handed (`ReceivedSenderKey`), received over the pairwise
 * sessions (`SenderKeyDistribution`).
 *
 * Invariants:
 * - A fresh message key for every message: key i (the AEAD key of message i,
 *   used once, so with a fixed nonce) comes from chain key i, and
 *   chain key i+1 replaces chain key i; neither side keeps a used key, so a
 *   replay fails and a later snapshot of the state cannot open an older
 *   message (forward secrecy of used keys).
 * - Each message is signed by the epoch's signing key over the routing header
 *   (chat, message id, sending device), the epoch, the iteration and the
 *   ciphertext; the signature is checked before any key is touched, so a
 *   member that holds the chain (every member does) still cannot forge
 *   another member's message, and a forgery changes no state.
 * - Out of order delivery within a chain: at most MAX_SKIP_PER_CHAIN message
 *   keys ahead at once; at most MAX_SKIPPED_KEYS skipped keys kept per chain,
 *   the oldest dropped first.
 * - Nothing changes on failure: a rejected message leaves the input state as
 *   it was (every step returns a new state and never changes its input).
 */
import type { DeviceSigner, Ed25519Provider } from "../crypto/device-signer.ts";
import {
  AEAD_NONCE_BYTES,
  aeadOpen,
  aeadSeal,
  concat,
  equalBytes,
  hmacSha256Each,
  randomBytes,
  ErrorCode,
  RemessengerError,
} from "@remessenger/protocol";
import { pad, unpad } from "../e2e/padding.ts";

/** Most message keys one chain may skip at once (a larger gap is refused). */
export const MAX_SKIP_PER_CHAIN = 2000;
/** Most skipped message keys kept per chain; the oldest go first. */
export const MAX_SKIPPED_KEYS = 2000;
/** Iterations are uint32 on the wire; a chain this long must be replaced (rotate). */
export const MAX_ITERATION = 0xffff_ffff;
export const CHAIN_KEY_BYTES = 32;
export const SIGNING_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

const CHAIN_MESSAGE = Uint8Array.of(1);
const CHAIN_NEXT = Uint8Array.of(2);
const ZERO_NONCE = new Uint8Array(AEAD_NONCE_BYTES);
const encoder = new TextEncoder();
const SIGNED_PREFIX = encoder.encode("remessenger/v1/group-message\u0000");

/** This device's sender key for one epoch of one group (secret: it rests encrypted). */
export interface OwnSenderKey {
  chatId: string;
  epoch: number;
  /** RFC 8032 seed of the key that signs this device's messages of this epoch. */
  signingSeed: Uint8Array;
  /** Its raw public key. */
  signingKey: Uint8Array;
  /** The iteration the next message gets. */
  iteration: number;
  /** Chain key `iteration`. */
  chainKey: Uint8Array;
}

/** What a member device hands the others (inside a pairwise-encrypted Content). */
export interface SenderKeyDistributionFields {
  chatId: string;
  epoch: number;
  iteration: number;
  chainKey: Uint8Array;
  signingKey: Uint8Array;
}

export interface SkippedMessageKey {
  iteration: number;
  messageKey: Uint8Array;
}

/** Another device's sender key for one epoch of one group, as this device holds it. */
export interface ReceivedSenderKey {
  chatId: string;
  senderDeviceId: string;
  epoch: number;
  signingKey: Uint8Array;
  /** The next iteration not yet reached. */
  iteration: number;
  /** Chain key `iteration`. */
  chainKey: Uint8Array;
  /** Keys of iterations below `iteration` whose messages have not arrived; ascending. */
  skipped: SkippedMessageKey[];
}

/** The fields of a GroupEnvelope (proto/remessenger/v1/group.proto). */
export interface GroupEnvelopeFields {
  epoch: number;
  iteration: number;
  ciphertext: Uint8Array;
  signature: Uint8Array;
}

/** Why a group message did not open; the state is unchanged. */
export type SenderKeyFailure =
  | "wrong-key" // another chat, epoch or sender than the key's
  | "bad-signature" // not signed by the sender's key of this epoch (forged or tampered)
  | "replay" // its key was used already (or dropped from the skipped keys)
  | "too-far-ahead" // more than MAX_SKIP_PER_CHAIN messages skipped
  | "bad-body" // signed, but the ciphertext does not open (a broken sender)
  | "bad-padding";

export class SenderKeyError extends RemessengerError {
  override readonly name = "SenderKeyError";
  readonly reason: SenderKeyFailure;
  constructor(reason: SenderKeyFailure, message: string) {
    super(ErrorCode.ERROR_CODE_UNDECRYPTABLE, message);
    this.reason = reason;
  }
}

/** A new sender key for `epoch` of `chatId`: random chain key, fresh signing key, iteration 0. */
export async function createOwnSenderKey(
  ed25519: Ed25519Provider,
  chatId: string,
  epoch: number,
  random: (n: number) => Uint8Array = randomBytes,
): Promise<{ key: OwnSenderKey; signer: DeviceSigner }> {
  const signingSeed = ed25519.generateSeed();
  const signer = await ed25519.signerFromSeed(signingSeed);
  const key: OwnSenderKey = {
    chatId,
    epoch,
    signingSeed,
    signingKey: signer.publicKey,
    iteration: 0,
    chainKey: random(CHAIN_KEY_BYTES),
  };
  return { key, signer };
}

/** What to hand other member devices now: messages from the current iteration on open with it. */
export function distributionOf(key: OwnSenderKey): SenderKeyDistributionFields {
  return {
    chatId: key.chatId,
    epoch: key.epoch,
    iteration: key.iteration,
    chainKey: key.chainKey,
    signingKey: key.signingKey,
  };
}

/** The receiving state for a distribution from `senderDeviceId`; throws on malformed keys. */
export function receiveDistribution(
  senderDeviceId: string,
  distribution: SenderKeyDistributionFields,
): ReceivedSenderKey {
  if (distribution.chainKey.length !== CHAIN_KEY_BYTES) {
    throw new Error(`a sender chain key has ${CHAIN_KEY_BYTES} bytes, got ${distribution.chainKey.length}`);
  }
  if (distribution.signingKey.length !== SIGNING_KEY_BYTES) {
    throw new Error(`a sender signing key has ${SIGNING_KEY_BYTES} bytes, got ${distribution.signingKey.length}`);
  }
  if (!Number.isInteger(distribution.iteration) || distribution.iteration < 0 || distribution.iteration > MAX_ITERATION)
    throw new Error(`not a chain iteration: ${distribution.iteration}`);
  return {
    chatId: distribution.chatId,
    senderDeviceId,
    epoch: distribution.epoch,
    signingKey: distribution.signingKey.slice(),
    iteration: distribution.iteration,
    chainKey: distribution.chainKey.slice(),
    skipped: [],
  };
}

/**
 * The routing header a group message is bound to (associated data and signed):
 * a ciphertext moved to another chat, message id or sending device fails.
 */
export function groupRoute(chatId: string, messageId: Uint8Array, senderDeviceId: string): Uint8Array {
  const head = encoder.encode(`remessenger/v1/group-route\u0000${chatId}\u0000`);
  const tail = encoder.encode(`\u0000${senderDeviceId}`);
  return concat(head, messageId, tail);
}

/**
 * Encrypts and signs one message (`plaintext`: an encoded Content, padded
 * here). `signer` is the signer of `key.signingSeed` (made once per key by
 * the caller, so a message costs one signature, not a key import).
 */
export async function sealGroupMessage(
  key: OwnSenderKey,
  signer: DeviceSigner,
  plaintext: Uint8Array,
  route: Uint8Array,
): Promise<{ key: OwnSenderKey; envelope: GroupEnvelopeFields }> {
  if (!equalBytes(signer.publicKey, key.signingKey)) throw new Error("the signer is not this sender key's");
  if (key.iteration >= MAX_ITERATION) throw new Error("this sender key is used up: the group needs a new epoch");
  const [chainKey, messageKey] = kdfChain(key.chainKey);
  const header = messageHeader(route, key.epoch, key.iteration);
  const ciphertext = sealBody(messageKey, pad(plaintext), concat(header, key.signingKey));
  const signature = await signer.sign(concat(SIGNED_PREFIX, header, ciphertext));
  return {
    key: { ...key, iteration: key.iteration + 1, chainKey },
    envelope: { epoch: key.epoch, iteration: key.iteration, ciphertext, signature },
  };
}

/**
 * Verifies and decrypts one message from the key's sender. Resolves with the
 * new state and the plaintext (unpadded), or rejects with a SenderKeyError
 * (the input state stays valid).
 */
export async function openGroupMessage(
  key: ReceivedSenderKey,
  envelope: GroupEnvelopeFields,
  route: Uint8Array,
  ed25519: Pick<Ed25519Provider, "verify">,
): Promise<{ key: ReceivedSenderKey; plaintext: Uint8Array }> {
  if (envelope.epoch !== key.epoch) {
    throw new SenderKeyError("wrong-key", `a message of epoch ${envelope.epoch} for a key of epoch ${key.epoch}`);
  }
  const header = messageHeader(route, envelope.epoch, envelope.iteration);
  if (envelope.signature.length !== SIGNATURE_BYTES) {
    throw new SenderKeyError("bad-signature", `a signature has ${SIGNATURE_BYTES} bytes`);
  }
  const isSigned = await ed25519.verify(
    key.signingKey,
    concat(SIGNED_PREFIX, header, envelope.ciphertext),
    envelope.signature,
  );
  if (!isSigned)
    throw new SenderKeyError("bad-signature", "the message is not signed by the sender's key of its epoch");
  const { iteration } = envelope;
  let messageKey: Uint8Array;
  let next: ReceivedSenderKey;
  if (iteration < key.iteration) {
    const index = key.skipped.findIndex((s) => s.iteration === iteration);
    const found = key.skipped[index];
    if (found === undefined) {
      throw new SenderKeyError("replay", `message ${iteration} of this chain was opened already or its key is gone`);
    }
    messageKey = found.messageKey;
    next = { ...key, skipped: key.skipped.filter((_, i) => i !== index) };
  } else {
    if (iteration - key.iteration > MAX_SKIP_PER_CHAIN) {
      throw new SenderKeyError("too-far-ahead", `more than ${MAX_SKIP_PER_CHAIN} messages skipped in one chain`);
    }
    let chain = key.chainKey;
    const added: SkippedMessageKey[] = [];
    for (let i = key.iteration; i < iteration; i += 1) {
      const [nextChain, skippedKey] = kdfChain(chain);
      added.push({ iteration: i, messageKey: skippedKey });
      chain = nextChain;
    }
    const [chainKey, current] = kdfChain(chain);
    messageKey = current;
    const skipped = added.length === 0 ? key.skipped : [...key.skipped, ...added];
    next = {
      ...key,
      iteration: iteration + 1,
      chainKey,
      skipped: skipped.length > MAX_SKIPPED_KEYS ? skipped.slice(skipped.length - MAX_SKIPPED_KEYS) : skipped,
    };
  }
  const padded = openBody(messageKey, envelope.ciphertext, concat(header, key.signingKey));
  if (padded === undefined) throw new SenderKeyError("bad-body", "the signed message does not decrypt");
  let plaintext: Uint8Array;
  try {
    plaintext = unpad(padded);
  } catch {
    throw new SenderKeyError("bad-padding", "the decrypted message is not padded correctly");
  }
  return { key: next, plaintext };
}

/** Route, epoch (u64) and iteration (u32): what every message binds and signs. */
function messageHeader(route: Uint8Array, epoch: number, iteration: number): Uint8Array {
  const out = new Uint8Array(route.length + 12);
  out.set(route);
  const view = new DataView(out.buffer);
  view.setBigUint64(route.length, BigInt(epoch));
  view.setUint32(route.length + 8, iteration);
  return out;
}

/** KDF_CK: next chain key, message key (one HMAC key setup for both). */
function kdfChain(chainKey: Uint8Array): [Uint8Array, Uint8Array] {
  const [next, message] = hmacSha256Each(chainKey, [CHAIN_NEXT, CHAIN_MESSAGE]);
  if (next === undefined || message === undefined) throw new Error("HMAC gave no output");
  return [next, message];
}

// Each message key seals exactly one message, so a fixed nonce never repeats under one key.
function sealBody(messageKey: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Uint8Array {
  return aeadSeal(messageKey, ZERO_NONCE, plaintext, ad);
}

function openBody(messageKey: Uint8Array, body: Uint8Array, ad: Uint8Array): Uint8Array | undefined {
  return aeadOpen(messageKey, ZERO_NONCE, body, ad);
}
