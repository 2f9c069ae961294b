/**
 * HKDF (RFC 5869) and HMAC over SHA-256, and SHA-256/SHA-512, from
 * @noble/hashes: the key derivation of every end-to-end layer. Synchronous
 * and portable; the inputs are a few hundred bytes, where native code would
 * win nothing over the call overhead.
 */
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 as nobleSha256, sha512 as nobleSha512 } from "@noble/hashes/sha2.js";

const encoder = new TextEncoder();

/** HKDF-SHA256: `length` bytes from `ikm`; an empty salt means 32 zero bytes (RFC 5869 §2.2). */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array | string, length: number): Uint8Array {
  return hkdf(nobleSha256, ikm, salt, typeof info === "string" ? encoder.encode(info) : info, length);
}

export function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  return hmac(nobleSha256, key, data);
}

export function sha256(data: Uint8Array): Uint8Array {
  return nobleSha256(data);
}

export function sha512(data: Uint8Array): Uint8Array {
  return nobleSha512(data);
}
