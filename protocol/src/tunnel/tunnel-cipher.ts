/**
 * The DNS tunnel's cryptography, on the project's primitive wrappers
 * (X25519, XChaCha20-Poly1305, HKDF-SHA256): a Noise NK handshake against
 * the gateway's static key that the client has pinned, the session keys it
 * yields, the header maskers of tunnel-packet.ts, and the record layer that
 * seals frames.
 *
 * Handshake (Noise_NK_25519_XChaChaPoly_SHA256; XChaCha20-Poly1305 stands
 * in for Noise's ChaChaPoly, with the counter in the last 8 nonce bytes):
 *   <- s                      (pinned)
 *   -> e, es, {version, sid}  message 1: 32 + 5 + 16 bytes
 *   <- e, ee, {version, hold} message 2: 32 + 3 + 16 bytes (hold: how long the
 *                             gateway holds an idle poll, in ms)
 * The prologue binds the zone; the sid inside message 1 must equal the one
 * the query carries. Only the holder of the static private key can answer
 * message 2, so a client that completes the handshake talks to the gateway.
 *
 * Records: each frame is sealed alone. On the wire a record is its length
 * (3 bytes, masked with a keystream of the record number, as in OpenSSH's
 * chacha20-poly1305) followed by the AEAD of the frame with that record
 * number as nonce and the masked length as associated data. The stream is
 * therefore ciphertext throughout; a record that does not open ends the
 * session (a forged or corrupted stream is never delivered).
 */
import { AEAD_NONCE_BYTES, AEAD_TAG_BYTES, aeadOpen, aeadSeal } from "../crypto/aead.ts";
import { stream as xchacha20Stream } from "@stablelib/xchacha20";
import { hkdfSha256, sha256 } from "../crypto/hkdf.ts";
import type { X25519Provider } from "../crypto/x25519.ts";
import { concat } from "../wire/bytes.ts";
import type { Masker } from "./tunnel-packet.ts";
import { RemessengerError } from "../wire/errors.ts";
import { ErrorCode } from "../wire/proto.ts";

export const TUNNEL_PROTOCOL_VERSION = 1;
const PROTOCOL_NAME = "Noise_NK_25519_XChaChaPoly_SHA256";
const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
/** Record length prefix: up to 16 MiB, above any frame. */
export const RECORD_LENGTH_BYTES = 3;
export const RECORD_OVERHEAD_BYTES = RECORD_LENGTH_BYTES + AEAD_TAG_BYTES;
export const HANDSHAKE_MESSAGE1_BYTES = 32 + 5 + AEAD_TAG_BYTES;
export const HANDSHAKE_MESSAGE2_BYTES = 32 + 3 + AEAD_TAG_BYTES;

/** A tunnel record or handshake that does not open or verify; the session ends (BAD_FRAME). */
export class TunnelCryptoError extends RemessengerError {
  override readonly name = "TunnelCryptoError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_BAD_FRAME, message, options);
  }
}

function counterNonce(counter: number, domain = 0): Uint8Array {
  const nonce = new Uint8Array(AEAD_NONCE_BYTES);
  nonce[0] = domain;
  let value = counter;
  for (let i = AEAD_NONCE_BYTES - 1; i >= AEAD_NONCE_BYTES - 8 && value > 0; i -= 1) {
    nonce[i] = value % 256;
    value = Math.floor(value / 256);
  }
  return nonce;
}

/**
 * `length` keystream bytes of XChaCha20 under `key` and `nonce`: the same
 * cipher as the AEAD, without the Poly1305 tag the masks do not need
 * (measured: the tag was a tenth of the tunnel's CPU per query).
 */
function keystream(key: Uint8Array, nonce: Uint8Array, length: number): Uint8Array {
  return xchacha20Stream(key, nonce, new Uint8Array(length));
}

/** A masker (tunnel-packet.ts) from a 32-byte key. */
export function maskerFromKey(key: Uint8Array): Masker {
  return (domain, r, sid, length) => {
    const nonce = new Uint8Array(AEAD_NONCE_BYTES);
    nonce[0] = 0x80 | domain;
    nonce.set(r.subarray(0, 4), 1);
    nonce[5] = sid >>> 24;
    nonce[6] = (sid >>> 16) & 0xff;
    nonce[7] = (sid >>> 8) & 0xff;
    nonce[8] = sid & 0xff;
    return keystream(key, nonce, length);
  };
}

/** The public obfuscation masker of a gateway: hides session ids and handshake headers from casual view. */
export function obfuscationMasker(serverPublicKey: Uint8Array, zone: string): Masker {
  return maskerFromKey(hkdfSha256(serverPublicKey, EMPTY, `remessenger tunnel obfuscation v1 ${zone}`, 32));
}

/** Noise symmetric state. */
class SymmetricState {
  private ck: Uint8Array;
  private h: Uint8Array;
  private k: Uint8Array | undefined;
  private n = 0;

  constructor(prologue: Uint8Array) {
    const name = encoder.encode(PROTOCOL_NAME);
    this.h = name.length <= 32 ? concat(name, new Uint8Array(32 - name.length)) : sha256(name);
    this.ck = this.h;
    this.mixHash(prologue);
  }

  mixHash(data: Uint8Array): void {
    this.h = sha256(concat(this.h, data));
  }

  mixKey(ikm: Uint8Array): void {
    const out = hkdfSha256(ikm, this.ck, EMPTY, 64);
    this.ck = out.slice(0, 32);
    this.k = out.slice(32, 64);
    this.n = 0;
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    if (this.k === undefined) throw new TunnelCryptoError("no key yet");
    const sealed = aeadSeal(this.k, counterNonce(this.n), plaintext, this.h);
    this.n += 1;
    this.mixHash(sealed);
    return sealed;
  }

  decryptAndHash(sealed: Uint8Array): Uint8Array {
    if (this.k === undefined) throw new TunnelCryptoError("no key yet");
    const plaintext = aeadOpen(this.k, counterNonce(this.n), sealed, this.h);
    if (plaintext === undefined) throw new TunnelCryptoError("handshake message does not authenticate");
    this.n += 1;
    this.mixHash(sealed);
    return plaintext;
  }

  split(): { initiatorToResponder: Uint8Array; responderToInitiator: Uint8Array } {
    const out = hkdfSha256(EMPTY, this.ck, EMPTY, 64);
    return { initiatorToResponder: out.slice(0, 32), responderToInitiator: out.slice(32, 64) };
  }
}

function prologue(zone: string): Uint8Array {
  return encoder.encode(`remessenger tunnel v1 ${zone}`);
}

function sidBytes(sid: number): Uint8Array {
  return new Uint8Array([sid >>> 24, (sid >>> 16) & 0xff, (sid >>> 8) & 0xff, sid & 0xff]);
}

/** The keys of one tunnel session, for one side. */
export interface TunnelKeys {
  /** Masks the headers of queries (client → gateway). */
  queryMasker: Masker;
  /** Masks the headers of answers (gateway → client). */
  answerMasker: Masker;
  /** Record keys per direction. */
  upstream: RecordKeys;
  downstream: RecordKeys;
}

export interface RecordKeys {
  sealKey: Uint8Array;
  lengthKey: Uint8Array;
}

function deriveKeys(split: { initiatorToResponder: Uint8Array; responderToInitiator: Uint8Array }): TunnelKeys {
  const derive = (key: Uint8Array, label: string): Uint8Array =>
    hkdfSha256(key, EMPTY, `remessenger tunnel ${label}`, 32);
  const up = split.initiatorToResponder;
  const down = split.responderToInitiator;
  return {
    queryMasker: maskerFromKey(derive(up, "header")),
    answerMasker: maskerFromKey(derive(down, "header")),
    upstream: { sealKey: derive(up, "record"), lengthKey: derive(up, "length") },
    downstream: { sealKey: derive(down, "record"), lengthKey: derive(down, "length") },
  };
}

/** The client's side of the handshake, between message 1 and message 2. */
export interface ClientHandshake {
  message1: Uint8Array;
  /** Reads message 2; throws TunnelCryptoError when it is not from the pinned gateway. */
  finish(message2: Uint8Array): Promise<{ keys: TunnelKeys; holdMs: number }>;
}

export async function startClientHandshake(
  x25519: X25519Provider,
  serverPublicKey: Uint8Array,
  zone: string,
  sid: number,
): Promise<ClientHandshake> {
  const state = new SymmetricState(prologue(zone));
  state.mixHash(serverPublicKey);
  const ephemeral = await x25519.generateKeyPair();
  state.mixHash(ephemeral.publicKey);
  state.mixKey(await x25519.sharedSecret(ephemeral.privateKey, serverPublicKey));
  const payload = concat(new Uint8Array([TUNNEL_PROTOCOL_VERSION]), sidBytes(sid));
  const message1 = concat(ephemeral.publicKey, state.encryptAndHash(payload));
  return {
    message1,
    finish: async (message2) => {
      if (message2.length !== HANDSHAKE_MESSAGE2_BYTES) {
        throw new TunnelCryptoError(`handshake answer of ${message2.length} bytes`);
      }
      const serverEphemeral = message2.subarray(0, 32);
      state.mixHash(serverEphemeral);
      let shared: Uint8Array;
      try {
        shared = await x25519.sharedSecret(ephemeral.privateKey, serverEphemeral);
      } catch (cause) {
        throw new TunnelCryptoError("bad gateway ephemeral key", { cause });
      }
      state.mixKey(shared);
      const reply = state.decryptAndHash(message2.subarray(32));
      if (reply[0] !== TUNNEL_PROTOCOL_VERSION)
        throw new TunnelCryptoError(`gateway speaks tunnel version ${reply[0]}`);
      return { keys: deriveKeys(state.split()), holdMs: ((reply[1] ?? 0) << 8) | (reply[2] ?? 0) };
    },
  };
}

/** The gateway's answer to a client's message 1: message 2 and the session keys. */
export async function answerClientHandshake(
  x25519: X25519Provider,
  serverPrivateKey: Uint8Array,
  serverPublicKey: Uint8Array,
  zone: string,
  sid: number,
  message1: Uint8Array,
  holdMs = 0,
): Promise<{ message2: Uint8Array; keys: TunnelKeys }> {
  if (message1.length !== HANDSHAKE_MESSAGE1_BYTES) {
    throw new TunnelCryptoError(`handshake message of ${message1.length} bytes`);
  }
  const state = new SymmetricState(prologue(zone));
  state.mixHash(serverPublicKey);
  const clientEphemeral = message1.subarray(0, 32);
  state.mixHash(clientEphemeral);
  let shared: Uint8Array;
  try {
    shared = await x25519.sharedSecret(serverPrivateKey, clientEphemeral);
  } catch (cause) {
    throw new TunnelCryptoError("bad client ephemeral key", { cause });
  }
  state.mixKey(shared);
  const payload = state.decryptAndHash(message1.subarray(32));
  if (payload[0] !== TUNNEL_PROTOCOL_VERSION) throw new TunnelCryptoError(`client speaks tunnel version ${payload[0]}`);
  const claimed = ((payload[1] ?? 0) << 24) | ((payload[2] ?? 0) << 16) | ((payload[3] ?? 0) << 8) | (payload[4] ?? 0);
  if (claimed >>> 0 !== sid >>> 0) throw new TunnelCryptoError("handshake sid does not match the query");
  const ephemeral = await x25519.generateKeyPair();
  state.mixHash(ephemeral.publicKey);
  state.mixKey(await x25519.sharedSecret(ephemeral.privateKey, clientEphemeral));
  const hold = Math.min(0xffff, Math.max(0, Math.round(holdMs)));
  const message2 = concat(
    ephemeral.publicKey,
    state.encryptAndHash(new Uint8Array([TUNNEL_PROTOCOL_VERSION, hold >>> 8, hold & 0xff])),
  );
  return { message2, keys: deriveKeys(state.split()) };
}

/** Seals frames into records, numbered from 0. */
export class RecordSealer {
  private readonly keys: RecordKeys;
  private counter = 0;

  constructor(keys: RecordKeys) {
    this.keys = keys;
  }

  seal(frame: Uint8Array): Uint8Array {
    const sealedLength = frame.length + AEAD_TAG_BYTES;
    if (sealedLength >= 1 << (8 * RECORD_LENGTH_BYTES)) throw new TunnelCryptoError("frame too large for a record");
    const length = new Uint8Array([sealedLength >>> 16, (sealedLength >>> 8) & 0xff, sealedLength & 0xff]);
    const mask = keystream(this.keys.lengthKey, counterNonce(this.counter, 1), RECORD_LENGTH_BYTES);
    for (let i = 0; i < RECORD_LENGTH_BYTES; i += 1) length[i] = (length[i] ?? 0) ^ (mask[i] ?? 0);
    const sealed = aeadSeal(this.keys.sealKey, counterNonce(this.counter, 2), frame, length);
    this.counter += 1;
    return concat(length, sealed);
  }
}

/** Reads records from the in-order stream and opens them. */
export class RecordOpener {
  private readonly keys: RecordKeys;
  private readonly maxRecordBytes: number;
  private counter = 0;
  /** Stream bytes not yet consumed, in order (joined only when a record is complete). */
  private parts: Uint8Array[] = [];
  private partsBytes = 0;
  private expected: number | undefined;
  private lengthBytes: Uint8Array = new Uint8Array(0);

  constructor(keys: RecordKeys, maxFrameBytes: number) {
    this.keys = keys;
    this.maxRecordBytes = maxFrameBytes + AEAD_TAG_BYTES;
  }

  /** Appends stream bytes; returns the frames completed. Throws TunnelCryptoError on a bad record. */
  push(bytes: Uint8Array): Uint8Array[] {
    if (bytes.length > 0) {
      this.parts.push(bytes);
      this.partsBytes += bytes.length;
    }
    const frames: Uint8Array[] = [];
    for (;;) {
      if (this.expected === undefined) {
        if (this.partsBytes < RECORD_LENGTH_BYTES) break;
        this.lengthBytes = this.takeBytes(RECORD_LENGTH_BYTES);
        const mask = keystream(this.keys.lengthKey, counterNonce(this.counter, 1), RECORD_LENGTH_BYTES);
        const length =
          (((this.lengthBytes[0] ?? 0) ^ (mask[0] ?? 0)) << 16) |
          (((this.lengthBytes[1] ?? 0) ^ (mask[1] ?? 0)) << 8) |
          ((this.lengthBytes[2] ?? 0) ^ (mask[2] ?? 0));
        if (length < AEAD_TAG_BYTES || length > this.maxRecordBytes) {
          throw new TunnelCryptoError(`record of ${length} bytes`);
        }
        this.expected = length;
      }
      if (this.partsBytes < this.expected) break;
      const sealed = this.takeBytes(this.expected);
      const frame = aeadOpen(this.keys.sealKey, counterNonce(this.counter, 2), sealed, this.lengthBytes);
      if (frame === undefined) throw new TunnelCryptoError("a record does not authenticate");
      frames.push(frame);
      this.expected = undefined;
      this.counter += 1;
    }
    return frames;
  }

  private takeBytes(count: number): Uint8Array {
    const out = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const head = this.parts[0];
      if (head === undefined) break;
      const n = Math.min(head.length, count - filled);
      out.set(head.subarray(0, n), filled);
      filled += n;
      if (n === head.length) this.parts.shift();
      else this.parts[0] = head.subarray(n);
    }
    this.partsBytes -= filled;
    return out;
  }
}
