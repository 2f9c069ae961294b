/**
 * HKDF (RFC 5869) and HMAC over SHA-256, and SHA-256/SHA-512, from
 * @noble/hashes: the key derivation of every end-to-end layer. Synchronous
 * and portable; the inputs are a few hundred bytes, where native code would
 * win nothing over the call overhead.
 */
import { expand } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 as nobleSha256, sha512 as nobleSha512 } from "@noble/hashes/sha2.js";

const encoder = new TextEncoder();
const HASH_BYTES = 32;
/**
 * HMAC keyed with 32 zero bytes, set up once: the extract step under the
 * zero salt (ratchet message keys, session setup) then starts from a copy
 * instead of hashing the padded key again. Never digested itself.
 */
const ZERO_SALT_HMAC = hmac.create(nobleSha256, new Uint8Array(HASH_BYTES));

function isZeroSalt(salt: Uint8Array): boolean {
  return salt.length === 0 || (salt.length === HASH_BYTES && salt.every((byte) => byte === 0));
}

/** HKDF-SHA256: `length` bytes from `ikm`; an empty salt means 32 zero bytes (RFC 5869 §2.2). */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array | string, length: number): Uint8Array {
  const extract = (isZeroSalt(salt) ? ZERO_SALT_HMAC.clone() : hmac.create(nobleSha256, salt)).update(ikm);
  // As noble's own hkdf(): expand takes the digested extract HMAC to reuse, and wipes the PRK.
  return expand(nobleSha256, extract.digest(), typeof info === "string" ? encoder.encode(info) : info, length, extract);
}

export function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  return hmac(nobleSha256, key, data);
}

/** HMAC-SHA256 of each input under one key, set up once (a KDF chain step takes two). */
export function hmacSha256Each(key: Uint8Array, inputs: readonly Uint8Array[]): Uint8Array[] {
  const keyed = hmac.create(nobleSha256, key);
  const last = inputs.length - 1;
  return inputs.map((data, i) => (i === last ? keyed : keyed.clone()).update(data).digest());
}

export function sha256(data: Uint8Array): Uint8Array {
  return nobleSha256(data);
}

export function sha512(data: Uint8Array): Uint8Array {
  return nobleSha512(data);
}
