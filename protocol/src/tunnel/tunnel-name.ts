/**
 * How tunnel bytes become a DNS name and back, and how many fit: base32
 * (RFC 4648 alphabet, lower case, no padding) cut into labels of at most 63
 * characters, the tunnel zone at the end. Base32 is case-insensitive, so a
 * resolver that randomises the case of the question (0x20) changes nothing
 * after decoding; base64 and denser alphabets do not survive that.
 *
 * Lengths here are presentation lengths without the trailing dot: a name of
 * 253 characters is 255 octets on the wire, the RFC 1035 maximum.
 *
 * Invariants: `decodeTunnelName(encodeTunnelName(b, zone), zone)` is `b` for
 * any `b` that fits (`upstreamCapacityBytes`), whatever the case of the name;
 * every produced label is 1..63 characters and every name at most its budget.
 */
import { base32nopad } from "@scure/base";
import { RemessengerError } from "../wire/errors.ts";
import { ErrorCode } from "../wire/proto.ts";

/** RFC 1035: a label is at most 63 octets. */
export const MAX_LABEL_CHARS = 63;
/** RFC 1035: a name is at most 255 octets on the wire, 253 characters written out. */
export const MAX_NAME_CHARS = 253;
/** The name budgets the client steps down through when long names fail (censors cap QNAME length). */
export const NAME_BUDGET_STEPS = [253, 101, 72] as const;
/** The smallest budget the tunnel can run on: a handshake fragment must still fit. */
export const MIN_NAME_BUDGET = 48;

/** A DNS zone in canonical form: lower case, no trailing dot, every label 1..63 LDH characters. */
export function normalizeZone(zone: string): string {
  const canonical = zone.trim().toLowerCase().replace(/\.$/, "");
  const labels = canonical.split(".");
  if (canonical.length === 0 || canonical.length > MAX_NAME_CHARS - 10) {
    throw new Error(`tunnel zone must be 1..${MAX_NAME_CHARS - 10} characters, got ${JSON.stringify(zone)}`);
  }
  for (const label of labels) {
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(label)) {
      throw new Error(`tunnel zone ${JSON.stringify(zone)} has an invalid label ${JSON.stringify(label)}`);
    }
  }
  return canonical;
}

/** How many base32 characters fit in a name of `budget` characters ending in `zone`. */
export function nameCapacityChars(budget: number, zone: string): number {
  const room = Math.min(budget, MAX_NAME_CHARS) - zone.length; // data chars + one dot per label
  if (room < 2) return 0;
  // chars + ceil(chars / 63) ≤ room
  const fits = (chars: number): boolean => chars + Math.ceil(chars / MAX_LABEL_CHARS) <= room;
  let chars = Math.floor((room * MAX_LABEL_CHARS) / (MAX_LABEL_CHARS + 1));
  while (fits(chars + 1)) chars += 1;
  while (chars > 0 && !fits(chars)) chars -= 1;
  return chars;
}

/** Raw bytes one query name of `budget` characters can carry under `zone` (the theoretical upstream maximum). */
export function upstreamCapacityBytes(budget: number, zone: string): number {
  return Math.floor((nameCapacityChars(budget, zone) * 5) / 8);
}

/** Base32 characters that `bytes` bytes take. */
export function base32Chars(bytes: number): number {
  return Math.ceil((bytes * 8) / 5);
}

/** Presentation length of the name that carries `bytes` bytes under `zone`. */
export function tunnelNameChars(bytes: number, zone: string): number {
  const chars = base32Chars(bytes);
  return chars + Math.ceil(chars / MAX_LABEL_CHARS) + zone.length;
}

/** `bytes` as base32 labels followed by the zone (lower case). Throws when it would exceed `budget`. */
export function encodeTunnelName(bytes: Uint8Array, zone: string, budget: number = MAX_NAME_CHARS): string {
  if (bytes.length === 0) throw new Error("a tunnel name carries at least one byte");
  const text = base32nopad.encode(bytes).toLowerCase();
  const labels: string[] = [];
  for (let at = 0; at < text.length; at += MAX_LABEL_CHARS) labels.push(text.slice(at, at + MAX_LABEL_CHARS));
  const name = `${labels.join(".")}.${zone}`;
  if (name.length > Math.min(budget, MAX_NAME_CHARS)) {
    throw new Error(`${bytes.length} bytes need a ${name.length}-character name; the budget is ${budget}`);
  }
  return name;
}

/** Why a name is not a tunnel name. */
export class TunnelNameError extends RemessengerError {
  override readonly name = "TunnelNameError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_BAD_FRAME, message, options);
  }
}

/**
 * The bytes in a tunnel name, matched and decoded case-insensitively; the
 * name may end with a dot. Throws TunnelNameError when the name is not under
 * `zone`, has no data labels, or its labels are not base32.
 */
export function decodeTunnelName(name: string, zone: string): Uint8Array {
  const lower = name.toLowerCase().replace(/\.$/, "");
  const suffix = `.${zone}`;
  if (!lower.endsWith(suffix)) throw new TunnelNameError(`not under ${zone}`);
  const labels = lower.slice(0, -suffix.length).split(".");
  for (const label of labels) {
    if (label.length === 0 || label.length > MAX_LABEL_CHARS) throw new TunnelNameError("bad label length");
  }
  const text = labels.join("").toUpperCase();
  if (!/^[A-Z2-7]+$/.test(text)) throw new TunnelNameError("labels are not base32");
  // A valid unpadded base32 string never has a length of 1, 3 or 6 modulo 8.
  if ([1, 3, 6].includes(text.length % 8)) throw new TunnelNameError("base32 of an impossible length");
  try {
    return base32nopad.decode(text);
  } catch (cause) {
    throw new TunnelNameError(`labels are not base32: ${cause instanceof Error ? cause.message : "undecodable"}`);
  }
}

/** True when `name` is `zone` itself or a name under it (case-insensitive, trailing dot allowed). */
export function isInZone(name: string, zone: string): boolean {
  const lower = name.toLowerCase().replace(/\.$/, "");
  return lower === zone || lower.endsWith(`.${zone}`);
}

/** DNS header, question, OPT and answer RR header sizes used by the answer budget. */
const DNS_HEADER_BYTES = 12;
const QUESTION_FIXED_BYTES = 4; // type + class after the name
const OPT_RR_BYTES = 11;
const ANSWER_RR_FIXED_BYTES = 12; // 2 (compressed owner) + type + class + ttl + rdlength
/** A TXT character-string holds at most 255 bytes after its length byte. */
export const TXT_STRING_BYTES = 255;

/** Wire length of a name of `chars` presentation characters (no trailing dot). */
export function nameWireBytes(chars: number): number {
  return chars + 2;
}

/**
 * Payload bytes one TXT answer can carry in a response of at most
 * `responseBytes` to a question whose name has `questionChars` characters,
 * with the answer's owner name compressed to a pointer. This is the
 * theoretical downstream maximum the tunnel's efficiency is measured against.
 */
export function downstreamCapacityBytes(questionChars: number, responseBytes: number, hasOpt = true): number {
  const room =
    responseBytes -
    DNS_HEADER_BYTES -
    nameWireBytes(questionChars) -
    QUESTION_FIXED_BYTES -
    (hasOpt ? OPT_RR_BYTES : 0) -
    ANSWER_RR_FIXED_BYTES;
  if (room <= 1) return 0;
  // n bytes in TXT strings take n + ceil(n / 255) bytes.
  let bytes = room - Math.ceil(room / (TXT_STRING_BYTES + 1));
  while (bytes + Math.ceil(bytes / TXT_STRING_BYTES) > room) bytes -= 1;
  while (bytes + 1 + Math.ceil((bytes + 1) / TXT_STRING_BYTES) <= room) bytes += 1;
  return Math.max(0, Math.min(bytes, 65_535));
}
