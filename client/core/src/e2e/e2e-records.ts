/**
 * How the end-to-end layer's state rests in a ClientStore: each record
 * (a session with one device, our private prekeys, what we know of a user's
 * devices) becomes JSON, then an XChaCha20-Poly1305 box under the profile's
 * storage key with the record's key as associated data — so the store (a
 * SQLite file, IndexedDB) holds no private key, no ratchet key and no
 * plaintext, and a box moved to another key does not open.
 */
import { aeadOpenRandomNonce, aeadSealRandomNonce } from "@remessenger/protocol";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Uint8Arrays travel as {"$b": base64}. */
function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) {
    let binary = "";
    for (const byte of value) binary += String.fromCharCode(byte);
    return { $b: btoa(binary) };
  }
  return value;
}

function reviver(_key: string, value: unknown): unknown {
  if (typeof value === "object" && value !== null && "$b" in value) {
    const text = value.$b;
    if (typeof text === "string") return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  }
  return value;
}

export function sealRecord(storageKey: Uint8Array, key: string, value: unknown): Uint8Array {
  return aeadSealRandomNonce(storageKey, encoder.encode(JSON.stringify(value, replacer)), encoder.encode(key));
}

/** The record's value; throws when the box does not open (another key, tampering). */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names what the record holds; the box was sealed from that type
export function openRecord<T>(storageKey: Uint8Array, key: string, box: Uint8Array): T {
  const plain = aeadOpenRandomNonce(storageKey, box, encoder.encode(key));
  if (plain === undefined) throw new Error(`end-to-end record ${key} does not open with this profile's key`);
  return JSON.parse(decoder.decode(plain), reviver) as T;
}
