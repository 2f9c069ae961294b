/**
 * X25519 on node:crypto (OpenSSL), the native provider for Node: synchronous
 * calls, no WebCrypto promise or thread-pool hop per operation, which makes
 * it several times faster than Node's WebCrypto for our one-shot agreements.
 * Keys cross as raw bytes wrapped in the fixed RFC 8410 DER prefixes.
 *
 * Importing a private key costs OpenSSL more than the agreement itself, and
 * a ratchet uses each new key pair twice, so recently imported (or generated)
 * keys are kept as KeyObjects, least recently used out first.
 * Passes the same RFC 7748 vectors and cross-checks as the core's providers.
 */
import { type KeyObject, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync } from "node:crypto";
import { X25519_KEY_BYTES, type X25519Provider, checkNonZero, checkX25519Key } from "@remessenger/protocol";
import { KeyObjectCache } from "./key-object-cache.ts";

const PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const BASE_POINT = new Uint8Array(X25519_KEY_BYTES);
BASE_POINT[0] = 9;

/** Our own keys (identity, prekeys, each session's current ratchet key) come back much later. */
const PRIVATE_KEY_CACHE_SIZE = 256;
/**
 * A peer's public key is used within one step (a setup, a ratchet turn) and
 * then hardly again; keeping few spares the garbage collector old KeyObjects
 * to sweep (measured: ~9 us less per ratchet turn than keeping 256).
 */
const PUBLIC_KEY_CACHE_SIZE = 32;

const privateKeys = new KeyObjectCache(PRIVATE_KEY_CACHE_SIZE);
const publicKeys = new KeyObjectCache(PUBLIC_KEY_CACHE_SIZE);

function privateKeyObject(raw: Uint8Array): KeyObject {
  return privateKeys.get(raw, () =>
    createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: "der", type: "pkcs8" }),
  );
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  // JWK imports faster than DER here (measured), and raw bytes map onto it directly.
  return publicKeys.get(raw, () =>
    createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(raw).toString("base64url") }, format: "jwk" }),
  );
}

function agree(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  checkX25519Key(privateKey, "private key");
  checkX25519Key(publicKey, "public key");
  let secret: Buffer;
  try {
    secret = diffieHellman({ privateKey: privateKeyObject(privateKey), publicKey: publicKeyObject(publicKey) });
  } catch (cause) {
    // OpenSSL refuses an all-zero result; say it as the other providers do.
    throw new Error("X25519 gave an all-zero shared secret: the public key has small order", { cause });
  }
  return checkNonZero(new Uint8Array(secret));
}

export const nodeX25519: X25519Provider = {
  name: "webcrypto",
  generateKeyPair() {
    const pair = generateKeyPairSync("x25519");
    // One JWK export carries both halves: three times cheaper than two DER exports.
    const jwk = pair.privateKey.export({ format: "jwk" });
    if (jwk.d === undefined || jwk.x === undefined) throw new Error("node:crypto exported no X25519 key");
    const privateKey = new Uint8Array(Buffer.from(jwk.d, "base64url"));
    const publicKey = new Uint8Array(Buffer.from(jwk.x, "base64url"));
    privateKeys.get(privateKey, () => pair.privateKey);
    return Promise.resolve({ privateKey, publicKey });
  },
  publicKey(privateKey) {
    return Promise.resolve().then(() => agree(privateKey, BASE_POINT));
  },
  sharedSecret(privateKey, publicKey) {
    return Promise.resolve().then(() => agree(privateKey, publicKey));
  },
};
