/**
 * X25519 on @stablelib/x25519: pure TypeScript, runs wherever JavaScript
 * does (WebViews without WebCrypto X25519). About 15x slower than native, so
 * it is the fallback, not the default.
 */
import { generateKeyPairFromSeed, scalarMultBase, sharedKey } from "@stablelib/x25519";
import { randomBytes } from "../wire/ids.ts";
import { X25519_KEY_BYTES, type X25519Provider, checkNonZero, checkX25519Key } from "./x25519.ts";

export const stablelibX25519: X25519Provider = {
  name: "stablelib",
  generateKeyPair() {
    const pair = generateKeyPairFromSeed(randomBytes(X25519_KEY_BYTES));
    return Promise.resolve({ publicKey: pair.publicKey, privateKey: pair.secretKey });
  },
  publicKey(privateKey) {
    return Promise.resolve().then(() => {
      checkX25519Key(privateKey, "private key");
      return scalarMultBase(privateKey);
    });
  },
  sharedSecret(privateKey, publicKey) {
    return Promise.resolve().then(() => {
      checkX25519Key(privateKey, "private key");
      checkX25519Key(publicKey, "public key");
      // rejectZero=false: the check is ours, with one message for both providers.
      return checkNonZero(sharedKey(privateKey, publicKey, false));
    });
  },
};
