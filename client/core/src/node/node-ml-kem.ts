/**
 * ML-KEM-768 on node:crypto (OpenSSL 3.5 in Node 24): the native provider for
 * the CLI, an order of magnitude faster than the portable one. Keys stay the
 * FIPS 203 byte strings; they are wrapped in the fixed SPKI / PKCS#8 DER
 * prefixes of draft-ietf-lamps-kyber-certificates (the PKCS#8 "expandedKey"
 * form), so keys made by either provider work with the other.
 *
 * Imported keys are kept (KeyObjectCache): importing a secret key costs more
 * than two decapsulations, and a device decapsulates every new session's
 * ciphertext with the same last-resort PQ prekey.
 */
import { createPrivateKey, createPublicKey, decapsulate, encapsulate } from "node:crypto";
import {
  ML_KEM_CIPHERTEXT_BYTES,
  ML_KEM_PUBLIC_KEY_BYTES,
  ML_KEM_SECRET_KEY_BYTES,
  type MlKemProvider,
} from "../crypto/ml-kem.ts";
import { KeyObjectCache } from "./key-object-cache.ts";

/** SubjectPublicKeyInfo{ id-alg-ml-kem-768, BIT STRING(1,184 bytes) }. */
const SPKI_PREFIX = Buffer.from("308204b2300b0609608648016503040402038204a100", "hex");
/** PrivateKeyInfo{ 0, id-alg-ml-kem-768, OCTET STRING(expandedKey OCTET STRING(2,400 bytes)) }. */
const PKCS8_PREFIX = Buffer.from("30820978020100300b06096086480165030404020482096404820960", "hex");

/** A device holds a few PQ prekeys at a time; peers' keys are used once per session setup. */
const KEY_CACHE_SIZE = 16;
const publicKeys = new KeyObjectCache(KEY_CACHE_SIZE);
const secretKeys = new KeyObjectCache(KEY_CACHE_SIZE);

function requireSize(bytes: Uint8Array, size: number, what: string): void {
  if (bytes.length !== size) throw new Error(`an ML-KEM-768 ${what} has ${size} bytes, got ${bytes.length}`);
}

export const nodeMlKem: MlKemProvider = {
  name: "node",
  encapsulate(publicKey) {
    requireSize(publicKey, ML_KEM_PUBLIC_KEY_BYTES, "public key");
    const key = publicKeys.get(publicKey, () =>
      createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: "der", type: "spki" }),
    );
    const { ciphertext, sharedKey } = encapsulate(key);
    return { cipherText: new Uint8Array(ciphertext), sharedSecret: new Uint8Array(sharedKey) };
  },
  decapsulate(cipherText, secretKey) {
    requireSize(cipherText, ML_KEM_CIPHERTEXT_BYTES, "ciphertext");
    requireSize(secretKey, ML_KEM_SECRET_KEY_BYTES, "secret key");
    const key = secretKeys.get(secretKey, () =>
      createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secretKey]), format: "der", type: "pkcs8" }),
    );
    return new Uint8Array(decapsulate(key, cipherText));
  },
};
