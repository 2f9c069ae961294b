/**
 * The tunnel packet format: the bytes inside one query name (client →
 * gateway) and inside one TXT answer (gateway → client). See
 * docs/dns-tunnel.md for the diagrams.
 *
 * Query:  sid(4, masked) | r(4) | protected header | payload
 * Answer: protected header | payload
 *
 * `r` is 4 fresh random bytes per query: it makes every query name unique (no
 * cache can answer it) and is the nonce of the masks. The session id is masked
 * with a keystream of the public obfuscation key and `r`, so no label repeats
 * across queries; the header behind it is masked with a keystream of a
 * session key and `r`, so sequence and ack numbers are unreadable on the
 * way. Payloads are ciphertext already (records, see tunnel-records.ts).
 * Masks hide, they do not authenticate: a forged header can at worst disturb
 * a session, which the record layer's AEAD then ends (see tunnel-session.ts).
 *
 * Invariants: decode(encode(x)) = x for every packet read with the masker
 * it was written with; decoding never reads out of bounds and rejects
 * reserved bits, unknown kinds and short input with TunnelPacketError.
 * The kind is masked too, so a handshake query read with a session's
 * masker decodes as a session query 3 times in 256: the gateway checks a
 * handshake fragment against the ones it holds before it tries the session
 * (tunnel-gateway.ts).
 */
import { RemessengerError } from "../wire/errors.ts";
import { ErrorCode } from "../wire/proto.ts";

/** Session ids are 32 bits, chosen at random by the client. */
export const SESSION_ID_BYTES = 4;
/** Per-query random nonce. */
export const QUERY_NONCE_BYTES = 4;
/** Sequence numbers are 24 bits; a session that would pass this ends and a new one starts. */
export const MAX_SEQ = 0xff_ffff;
/** SACK bits after the cumulative ack. */
export const SACK_BITS = 16;

/** Bytes before the payload in a data or poll query. */
export const QUERY_HEADER_BYTES = SESSION_ID_BYTES + QUERY_NONCE_BYTES + 1 + 3 + 3 + 2;
/** Bytes before the fragment in a handshake query. */
export const HANDSHAKE_QUERY_HEADER_BYTES = SESSION_ID_BYTES + QUERY_NONCE_BYTES + 2;
/** Bytes before the payload in a data or empty answer. */
export const ANSWER_HEADER_BYTES = 1 + 3 + 3 + 2;
/** A handshake message travels in at most this many query fragments. */
export const MAX_HANDSHAKE_FRAGMENTS = 15;

const QUERY_KINDS = ["handshake", "data", "poll", "close"] as const;
const ANSWER_KINDS = ["handshake", "data", "empty", "pending"] as const;

/** What a receiver has of the other side's stream: everything below `next`, and SACK bits after it. */
export interface AckInfo {
  /** The lowest sequence number not yet received. */
  next: number;
  /** Bit i set: `next + 1 + i` received. */
  sack: number;
}

export type TunnelQuery =
  | { kind: "handshake"; sid: number; r: Uint8Array; fragIndex: number; fragCount: number; fragment: Uint8Array }
  | { kind: "data"; sid: number; r: Uint8Array; seq: number; ack: AckInfo; chunk: Uint8Array }
  | { kind: "poll"; sid: number; r: Uint8Array; ack: AckInfo; padding: number }
  | { kind: "close"; sid: number; r: Uint8Array; ack: AckInfo };

export type TunnelAnswer =
  | { kind: "handshake"; message: Uint8Array }
  | { kind: "data"; seq: number; ack: AckInfo; chunk: Uint8Array }
  | { kind: "empty"; ack: AckInfo }
  /** The gateway has part of a fragmented handshake and waits for the rest. */
  | { kind: "pending" };

/**
 * A keystream source for the masks: `length` bytes that depend on the key
 * behind it, a domain byte, the query nonce and the session id.
 */
export type Masker = (domain: number, r: Uint8Array, sid: number, length: number) => Uint8Array;

/** Mask domains: each use of a key gets its own keystream. */
export const MASK_SESSION_ID = 1;
export const MASK_QUERY_HEADER = 2;
export const MASK_ANSWER_HEADER = 3;
/** Padding of probe polls: keystream, so a long poll looks like any data query. */
export const MASK_PADDING = 4;

/** Bytes that are not a tunnel packet (BAD_FRAME). */
export class TunnelPacketError extends RemessengerError {
  override readonly name = "TunnelPacketError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_BAD_FRAME, message, options);
  }
}

function xorInto(target: Uint8Array, at: number, mask: Uint8Array): void {
  for (let i = 0; i < mask.length; i += 1) target[at + i] = (target[at + i] ?? 0) ^ (mask[i] ?? 0);
}

function writeU24(target: Uint8Array, at: number, value: number): void {
  target[at] = (value >>> 16) & 0xff;
  target[at + 1] = (value >>> 8) & 0xff;
  target[at + 2] = value & 0xff;
}

function readU24(source: Uint8Array, at: number): number {
  return ((source[at] ?? 0) << 16) | ((source[at + 1] ?? 0) << 8) | (source[at + 2] ?? 0);
}

function checkSeq(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_SEQ) throw new Error(`${what} out of range: ${value}`);
}

function writeAck(target: Uint8Array, at: number, ack: AckInfo): void {
  checkSeq(ack.next, "ack");
  writeU24(target, at, ack.next);
  target[at + 3] = (ack.sack >>> 8) & 0xff;
  target[at + 4] = ack.sack & 0xff;
}

function readAck(source: Uint8Array, at: number): AckInfo {
  return { next: readU24(source, at), sack: ((source[at + 3] ?? 0) << 8) | (source[at + 4] ?? 0) };
}

/** The session id and nonce of a query, unmasked with the public obfuscation masker. */
export function peekQuery(bytes: Uint8Array, obfuscation: Masker): { sid: number; r: Uint8Array } {
  if (bytes.length < SESSION_ID_BYTES + QUERY_NONCE_BYTES + 1) throw new TunnelPacketError("query too short");
  const r = bytes.slice(SESSION_ID_BYTES, SESSION_ID_BYTES + QUERY_NONCE_BYTES);
  const sidBytes = bytes.slice(0, SESSION_ID_BYTES);
  xorInto(sidBytes, 0, obfuscation(MASK_SESSION_ID, r, 0, SESSION_ID_BYTES));
  const sid =
    (((sidBytes[0] ?? 0) << 24) | ((sidBytes[1] ?? 0) << 16) | ((sidBytes[2] ?? 0) << 8) | (sidBytes[3] ?? 0)) >>> 0;
  return { sid, r };
}

/**
 * Encodes a query. Handshake queries are masked with the obfuscation masker
 * only (there are no session keys yet); the others with `session`.
 */
export function encodeQuery(query: TunnelQuery, obfuscation: Masker, session: Masker | undefined): Uint8Array {
  if (query.r.length !== QUERY_NONCE_BYTES) throw new Error(`a query nonce has ${QUERY_NONCE_BYTES} bytes`);
  let out: Uint8Array;
  let headerBytes: number;
  switch (query.kind) {
    case "handshake": {
      if (query.fragCount < 1 || query.fragCount > MAX_HANDSHAKE_FRAGMENTS || query.fragIndex >= query.fragCount) {
        throw new Error(`bad handshake fragment ${query.fragIndex}/${query.fragCount}`);
      }
      headerBytes = 2;
      out = new Uint8Array(HANDSHAKE_QUERY_HEADER_BYTES + query.fragment.length);
      out[8] = 0;
      out[9] = (query.fragIndex << 4) | query.fragCount;
      out.set(query.fragment, HANDSHAKE_QUERY_HEADER_BYTES);
      break;
    }
    case "data":
    case "poll":
    case "close": {
      const paddingMasker = query.kind === "poll" && query.padding > 0 ? session : undefined;
      const payload =
        query.kind === "data"
          ? query.chunk
          : paddingMasker !== undefined && query.kind === "poll"
            ? paddingMasker(MASK_PADDING, query.r, query.sid >>> 0, query.padding)
            : new Uint8Array(0);
      if (query.kind === "data") {
        checkSeq(query.seq, "seq");
        if (payload.length === 0) throw new Error("a data query carries at least one byte");
      }
      headerBytes = QUERY_HEADER_BYTES - SESSION_ID_BYTES - QUERY_NONCE_BYTES;
      out = new Uint8Array(QUERY_HEADER_BYTES + payload.length);
      out[8] = QUERY_KINDS.indexOf(query.kind);
      writeU24(out, 9, query.kind === "data" ? query.seq : 0);
      writeAck(out, 12, query.ack);
      out.set(payload, QUERY_HEADER_BYTES);
      break;
    }
  }
  const sid = query.sid >>> 0;
  out[0] = sid >>> 24;
  out[1] = (sid >>> 16) & 0xff;
  out[2] = (sid >>> 8) & 0xff;
  out[3] = sid & 0xff;
  xorInto(out, 0, obfuscation(MASK_SESSION_ID, query.r, 0, SESSION_ID_BYTES));
  out.set(query.r, SESSION_ID_BYTES);
  const masker = query.kind === "handshake" ? obfuscation : session;
  if (masker === undefined) throw new Error(`a ${query.kind} query needs the session's masker`);
  xorInto(out, 8, masker(MASK_QUERY_HEADER, query.r, sid, headerBytes));
  return out;
}

/**
 * Decodes a query whose sid and nonce `peekQuery` gave. `session` is the
 * masker of that session, or undefined when the gateway has no such session
 * (then only a handshake decodes).
 */
export function decodeQuery(bytes: Uint8Array, obfuscation: Masker, session: Masker | undefined): TunnelQuery {
  const { sid, r } = peekQuery(bytes, obfuscation);
  const decoded =
    (session === undefined ? undefined : readQuery(bytes, sid, r, session, false)) ??
    readQuery(bytes, sid, r, obfuscation, true);
  if (decoded === undefined) {
    throw new TunnelPacketError(session === undefined ? "no such session" : "undecodable query header");
  }
  return decoded;
}

/**
 * The query as a handshake fragment (masked with the obfuscation masker),
 * or undefined when it does not read as one. Never throws: the gateway asks
 * this of session queries too (see tunnel-gateway.ts).
 */
export function readHandshakeQuery(
  bytes: Uint8Array,
  obfuscation: Masker,
): Extract<TunnelQuery, { kind: "handshake" }> | undefined {
  if (bytes.length <= HANDSHAKE_QUERY_HEADER_BYTES) return undefined;
  const { sid, r } = peekQuery(bytes, obfuscation);
  const query = readQuery(bytes, sid, r, obfuscation, true);
  return query?.kind === "handshake" ? query : undefined;
}

/** The query read with one masker; handshakes only with the obfuscation masker, the rest only with a session's. */
function readQuery(
  bytes: Uint8Array,
  sid: number,
  r: Uint8Array,
  masker: Masker,
  isObfuscation: boolean,
): TunnelQuery | undefined {
  // One keystream call covers the whole header; its first byte unmasks the flags.
  const mask = masker(MASK_QUERY_HEADER, r, sid, QUERY_HEADER_BYTES - 8);
  const flags = (bytes[8] ?? 0) ^ (mask[0] ?? 0);
  const kind = QUERY_KINDS[flags];
  if (kind === undefined) return undefined;
  if (kind === "handshake") {
    if (!isObfuscation || bytes.length <= HANDSHAKE_QUERY_HEADER_BYTES) return undefined;
    const fragments = (bytes[9] ?? 0) ^ (mask[1] ?? 0);
    const fragIndex = fragments >>> 4;
    const fragCount = fragments & 0x0f;
    if (fragCount === 0 || fragIndex >= fragCount) return undefined;
    return { kind, sid, r, fragIndex, fragCount, fragment: bytes.slice(HANDSHAKE_QUERY_HEADER_BYTES) };
  }
  if (isObfuscation || bytes.length < QUERY_HEADER_BYTES) return undefined;
  const header = bytes.slice(8, QUERY_HEADER_BYTES);
  xorInto(header, 0, mask);
  const seq = readU24(header, 1);
  const ack = readAck(header, 4);
  const payload = bytes.slice(QUERY_HEADER_BYTES);
  switch (kind) {
    case "data":
      return payload.length === 0 ? undefined : { kind, sid, r, seq, ack, chunk: payload };
    case "poll":
      return { kind, sid, r, ack, padding: payload.length };
    case "close":
      return { kind, sid, r, ack };
  }
}

/** Encodes an answer to the query with nonce `r` of session `sid`. */
export function encodeAnswer(answer: TunnelAnswer, r: Uint8Array, sid: number, masker: Masker): Uint8Array {
  let out: Uint8Array;
  switch (answer.kind) {
    case "handshake":
      out = new Uint8Array(1 + answer.message.length);
      out.set(answer.message, 1);
      break;
    case "pending":
      out = new Uint8Array(1);
      break;
    case "data":
    case "empty": {
      const chunk = answer.kind === "data" ? answer.chunk : new Uint8Array(0);
      if (answer.kind === "data") {
        checkSeq(answer.seq, "seq");
        if (chunk.length === 0) throw new Error("a data answer carries at least one byte");
      }
      out = new Uint8Array(ANSWER_HEADER_BYTES + chunk.length);
      writeU24(out, 1, answer.kind === "data" ? answer.seq : 0);
      writeAck(out, 4, answer.ack);
      out.set(chunk, ANSWER_HEADER_BYTES);
      break;
    }
  }
  out[0] = ANSWER_KINDS.indexOf(answer.kind);
  const headerBytes = answer.kind === "data" || answer.kind === "empty" ? ANSWER_HEADER_BYTES : 1;
  xorInto(out, 0, masker(MASK_ANSWER_HEADER, r, sid >>> 0, headerBytes));
  return out;
}

/** Decodes an answer to the query with nonce `r`. */
export function decodeAnswer(bytes: Uint8Array, r: Uint8Array, sid: number, masker: Masker): TunnelAnswer {
  if (bytes.length < 1) throw new TunnelPacketError("empty answer");
  const mask = masker(MASK_ANSWER_HEADER, r, sid >>> 0, ANSWER_HEADER_BYTES);
  const flags = (bytes[0] ?? 0) ^ (mask[0] ?? 0);
  const kind = ANSWER_KINDS[flags];
  switch (kind) {
    case undefined:
      throw new TunnelPacketError("undecodable answer header");
    case "handshake":
      return { kind, message: bytes.slice(1) };
    case "pending":
      if (bytes.length !== 1) throw new TunnelPacketError("a pending answer has no payload");
      return { kind };
    case "data":
    case "empty": {
      if (bytes.length < ANSWER_HEADER_BYTES) throw new TunnelPacketError("answer too short");
      const header = bytes.slice(0, ANSWER_HEADER_BYTES);
      xorInto(header, 0, mask);
      const ack = readAck(header, 4);
      if (kind === "empty") {
        if (bytes.length !== ANSWER_HEADER_BYTES) throw new TunnelPacketError("an empty answer has no payload");
        return { kind, ack };
      }
      if (bytes.length === ANSWER_HEADER_BYTES) throw new TunnelPacketError("a data answer without data");
      return { kind, seq: readU24(header, 1), ack, chunk: bytes.slice(ANSWER_HEADER_BYTES) };
    }
  }
  throw new TunnelPacketError("undecodable answer header");
}
