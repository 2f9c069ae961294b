/**
 * X25519 on WebCrypto (crypto.subtle): native code in Node 24 and current
 * browsers. Keys cross as raw bytes: the private scalar is imported as PKCS#8
 * (RFC 8410 prefix) without extractability, the public key as "raw".
 *
 * WebCrypto has no "public key of this private key" call; X25519 of the
 * private key and the base point u = 9 is exactly that, so one deriveBits
 * gives it.
 */
import { randomBytes } from "../wire/ids.ts";
import { X25519_KEY_BYTES, type X25519Provider, checkNonZero, checkX25519Key } from "./x25519.ts";

/** DER of PrivateKeyInfo{ version 0, algorithm id-X25519, OCTET STRING(OCTET STRING(key)) }. */
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
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
);
const ALGORITHM = { name: "X25519" } as const;
const BASE_POINT = new Uint8Array(X25519_KEY_BYTES);
BASE_POINT[0] = 9;

function subtle(): SubtleCrypto {
  const value = globalThis.crypto?.subtle as SubtleCrypto | undefined;
  if (value === undefined) throw new Error("WebCrypto is not available here");
  return value;
}

async function derive(privateKey: Uint8Array, publicKey: Uint8Array): Promise<Uint8Array> {
  checkX25519Key(privateKey, "private key");
  checkX25519Key(publicKey, "public key");
  const der = new Uint8Array(PKCS8_PREFIX.length + X25519_KEY_BYTES);
  der.set(PKCS8_PREFIX);
  der.set(privateKey, PKCS8_PREFIX.length);
  try {
    const [priv, pub] = await Promise.all([
      subtle().importKey("pkcs8", der, ALGORITHM, false, ["deriveBits"]),
      subtle().importKey("raw", new Uint8Array(publicKey), ALGORITHM, true, []),
    ]);
    let bits: ArrayBuffer;
    try {
      bits = await subtle().deriveBits({ name: "X25519", public: pub }, priv, 8 * X25519_KEY_BYTES);
    } catch (cause) {
      // Engines refuse an all-zero result with an OperationError; say it as the portable provider does.
      throw new Error("X25519 gave an all-zero shared secret: the public key has small order", { cause });
    }
    return checkNonZero(new Uint8Array(bits));
  } finally {
    der.fill(0);
  }
}

export const webCryptoX25519: X25519Provider = {
  name: "webcrypto",
  async generateKeyPair() {
    const privateKey = randomBytes(X25519_KEY_BYTES);
    return { privateKey, publicKey: await derive(privateKey, BASE_POINT) };
  },
  publicKey: (privateKey) => derive(privateKey, BASE_POINT),
  sharedSecret: derive,
};
