/**
 * Ed25519 on WebCrypto (crypto.subtle): native code in Node 24 and current
 * browsers. The signing key is imported non-extractable, so once loaded it
 * cannot be read back out of the CryptoKey.
 *
 * WebCrypto imports an Ed25519 private key only as PKCS#8 or JWK, so the
 * 32-byte seed is wrapped in the fixed PKCS#8 prefix of RFC 8410.
 */
import { randomBytes } from "@remessenger/protocol";
import { ED25519_SEED_BYTES, checkSeed, type DeviceSigner, type Ed25519Provider } from "./device-signer.ts";

/** DER of PrivateKeyInfo{ version 0, algorithm id-Ed25519, OCTET STRING(OCTET STRING(seed)) }. */
const PKCS8_PREFIX = Uint8Array.of(
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x70,
  0x04,
  0x22,
  0x04,
  0x20,
);
const ALGORITHM = { name: "Ed25519" } as const;

function subtle(): SubtleCrypto {
  const value = globalThis.crypto?.subtle as SubtleCrypto | undefined;
  if (value === undefined) throw new Error("WebCrypto is not available here");
  return value;
}

function pkcs8(seed: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(PKCS8_PREFIX.length + seed.length);
  out.set(PKCS8_PREFIX);
  out.set(seed, PKCS8_PREFIX.length);
  return out;
}

/** A copy backed by a plain ArrayBuffer, as the WebCrypto typings require. */
function own(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes);
}

function base64UrlToBytes(text: string): Uint8Array {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

export const webCryptoEd25519: Ed25519Provider = {
  name: "webcrypto",
  generateSeed: () => randomBytes(ED25519_SEED_BYTES),
  async signerFromSeed(seed: Uint8Array): Promise<DeviceSigner> {
    checkSeed(seed);
    const der = pkcs8(seed);
    try {
      // WebCrypto cannot derive a public key from a private one; an extractable
      // import exported as JWK carries it (`x`). The signing key is a second,
      // non-extractable import.
      const extractable = await subtle().importKey("pkcs8", der, ALGORITHM, true, ["sign"]);
      const jwk = await subtle().exportKey("jwk", extractable);
      if (typeof jwk.x !== "string") throw new Error("WebCrypto exported no Ed25519 public key");
      const publicKey = base64UrlToBytes(jwk.x);
      const key = await subtle().importKey("pkcs8", der, ALGORITHM, false, ["sign"]);
      return {
        publicKey,
        sign: async (data: Uint8Array) => new Uint8Array(await subtle().sign(ALGORITHM, key, own(data))),
      };
    } finally {
      der.fill(0);
    }
  },
  async verify(publicKey, data, signature) {
    try {
      const key = await subtle().importKey("raw", own(publicKey), ALGORITHM, false, ["verify"]);
      return await subtle().verify(ALGORITHM, key, own(signature), own(data));
    } catch {
      // A malformed public key is "does not verify", as in the noble provider.
      return false;
    }
  },
};
