/**
 * Identifier formats. Users, devices and chats have a one-letter kind prefix and
 * 26 base32 characters (128 bits), so an id pasted into the wrong place is caught
 * at the door. Message ids are 16 raw bytes, shown as 32 hex digits.
 */
import { base32nopad, hex } from "@scure/base";
import { sha256 } from "@noble/hashes/sha2.js";
import { MESSAGE_ID_BYTES } from "./limits.ts";

export type IdKind = "user" | "device" | "chat";

const PREFIX: Record<IdKind, string> = { user: "u", device: "d", chat: "c" };
const ID_BODY = /^[a-z2-7]{26}$/;

function encodeIdBody(bytes: Uint8Array): string {
  return base32nopad.encode(bytes).toLowerCase();
}

/** A fresh random id of this kind. */
export function newId(kind: IdKind, random: (n: number) => Uint8Array = randomBytes): string {
  return PREFIX[kind] + encodeIdBody(random(16));
}

/** Whether `value` is a well-formed id of this kind. */
export function isId(kind: IdKind, value: string): boolean {
  return value.length === 27 && value.startsWith(PREFIX[kind]) && ID_BODY.test(value.slice(1));
}

/**
 * The id of the direct chat between two users: the same whichever of them asks,
 * so creating it twice finds the first.
 */
export function directChatId(userA: string, userB: string): string {
  const [first, second] = userA < userB ? [userA, userB] : [userB, userA];
  const digest = sha256(new TextEncoder().encode(`remessenger/v1/direct\u0000${first}\u0000${second}`));
  return PREFIX.chat + encodeIdBody(digest.subarray(0, 16));
}

export function newMessageId(random: (n: number) => Uint8Array = randomBytes): Uint8Array {
  return random(MESSAGE_ID_BYTES);
}

export function messageIdToHex(id: Uint8Array): string {
  return hex.encode(id);
}

/** Parses 32 hex digits into a message id; throws on anything else. */
export function messageIdFromHex(text: string): Uint8Array {
  if (!/^[0-9a-fA-F]{32}$/.test(text)) throw new Error(`not a message id (32 hex digits): ${text}`);
  return hex.decode(text.toLowerCase());
}

export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}
