/**
 * The device identity key: an Ed25519 key pair that signs login challenges
 * (and later prekeys). Two providers implement it — WebCrypto (native, fast)
 * and @noble/curves (portable, everywhere) — and one is picked at start-up
 * by `selectEd25519Provider()`.
 *
 * Invariants: the stored form of a key is its 32-byte RFC 8032 seed; the
 * public key is always derived from it, so a stored key cannot disagree with
 * itself. Both providers produce identical signatures (Ed25519 is deterministic).
 */

export const ED25519_SEED_BYTES = 32;

/** What the session needs from the identity key: its public half and signatures. */
export interface DeviceSigner {
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** 64-byte Ed25519 signature of `data`. */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** An Ed25519 implementation. */
export interface Ed25519Provider {
  readonly name: "webcrypto" | "noble";
  /** A fresh random 32-byte seed (the key's storage form). */
  generateSeed(): Uint8Array;
  /** The signer for a stored seed; throws on a seed of the wrong size. */
  signerFromSeed(seed: Uint8Array): Promise<DeviceSigner>;
  verify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): Promise<boolean>;
}

/** Throws unless `seed` has the size of an Ed25519 seed. */
export function checkSeed(seed: Uint8Array): void {
  if (seed.length !== ED25519_SEED_BYTES) {
    throw new Error(`an Ed25519 seed has ${ED25519_SEED_BYTES} bytes, got ${seed.length}`);
  }
}
