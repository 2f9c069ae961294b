/**
 * ML-KEM-768 (FIPS 203): the post-quantum half of the session setup. A KEM,
 * not a DH: the sender encapsulates to a public key and gets a ciphertext and
 * a shared secret; the holder of the decapsulation key recovers the same
 * secret from the ciphertext. The portable implementation is
 * @noble/post-quantum; platforms with a native one (Node 24's node:crypto,
 * client/core/src/node/node-ml-kem.ts) plug in an MlKemProvider. Keys are the
 * FIPS 203 byte strings (1,184-byte encapsulation key, 2,400-byte
 * decapsulation key) whatever the provider, so they interoperate.
 */
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";

export const ML_KEM_PUBLIC_KEY_BYTES = 1184;
export const ML_KEM_SECRET_KEY_BYTES = 2400;
export const ML_KEM_CIPHERTEXT_BYTES = 1088;
export const ML_KEM_SHARED_SECRET_BYTES = 32;

export interface MlKemKeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export interface MlKemProvider {
  readonly name: string;
  encapsulate(publicKey: Uint8Array): { cipherText: Uint8Array; sharedSecret: Uint8Array };
  decapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array;
}

/** The portable provider (@noble/post-quantum), with the size checks below. */
export const nobleMlKem: MlKemProvider = {
  name: "noble",
  encapsulate: (publicKey) => mlKemEncapsulate(publicKey),
  decapsulate: (cipherText, secretKey) => mlKemDecapsulate(cipherText, secretKey),
};

export function mlKemGenerateKeyPair(): MlKemKeyPair {
  return ml_kem768.keygen();
}

/** Rejects a public key of the wrong size or encoding (FIPS 203 §7.2 input check). */
export function mlKemEncapsulate(publicKey: Uint8Array): { cipherText: Uint8Array; sharedSecret: Uint8Array } {
  if (publicKey.length !== ML_KEM_PUBLIC_KEY_BYTES) {
    throw new Error(`an ML-KEM-768 public key has ${ML_KEM_PUBLIC_KEY_BYTES} bytes, got ${publicKey.length}`);
  }
  return ml_kem768.encapsulate(publicKey);
}

/**
 * The shared secret. A wrong ciphertext of the right size does not throw: ML-KEM
 * answers with an implicit-rejection secret, so the mismatch shows when the
 * first AEAD fails to open.
 */
export function mlKemDecapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array {
  if (cipherText.length !== ML_KEM_CIPHERTEXT_BYTES) {
    throw new Error(`an ML-KEM-768 ciphertext has ${ML_KEM_CIPHERTEXT_BYTES} bytes, got ${cipherText.length}`);
  }
  if (secretKey.length !== ML_KEM_SECRET_KEY_BYTES) {
    throw new Error(`an ML-KEM-768 secret key has ${ML_KEM_SECRET_KEY_BYTES} bytes, got ${secretKey.length}`);
  }
  return ml_kem768.decapsulate(cipherText, secretKey);
}
