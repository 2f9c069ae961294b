/**
 * X25519 (RFC 7748) key agreement behind one small interface, with two
 * implementations chosen at start-up by `selectX25519Provider()`: WebCrypto
 * (native code in Node 24 and current browsers) and @stablelib/x25519
 * (portable, everywhere). Both pass the RFC 7748 vectors and agree on every
 * input (property test).
 *
 * Keys are raw 32-byte strings: the private key is the RFC 7748 scalar
 * (clamped by the function, not by the caller), the public key the
 * u-coordinate. An all-zero shared secret (a small-order public key) is
 * refused by both providers, so a peer cannot force a known secret.
 */

export const X25519_KEY_BYTES = 32;

export interface X25519KeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

export interface X25519Provider {
  readonly name: "webcrypto" | "stablelib";
  /** A fresh random key pair. */
  generateKeyPair(): Promise<X25519KeyPair>;
  /** The public key of a private key. */
  publicKey(privateKey: Uint8Array): Promise<Uint8Array>;
  /** X25519(privateKey, publicKey); rejects on bad sizes and on an all-zero result. */
  sharedSecret(privateKey: Uint8Array, publicKey: Uint8Array): Promise<Uint8Array>;
}

/** Throws unless `key` is a 32-byte X25519 key. */
export function checkX25519Key(key: Uint8Array, what: string): void {
  if (key.length !== X25519_KEY_BYTES) {
    throw new Error(`an X25519 ${what} has ${X25519_KEY_BYTES} bytes, got ${key.length}`);
  }
}

/** Throws when a shared secret is all zeros (the peer's key had small order). */
export function checkNonZero(secret: Uint8Array): Uint8Array {
  let acc = 0;
  for (const byte of secret) acc |= byte;
  if (acc === 0) throw new Error("X25519 gave an all-zero shared secret: the public key has small order");
  return secret;
}
