/**
 * Ed25519 on @noble/curves: pure TypeScript, runs wherever JavaScript does
 * (old WebViews without WebCrypto Ed25519). Audited, constant-time code.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { randomBytes } from "@remessenger/protocol";
import { ED25519_SEED_BYTES, checkSeed, type DeviceSigner, type Ed25519Provider } from "./device-signer.ts";

export const nobleEd25519: Ed25519Provider = {
  name: "noble",
  generateSeed: () => randomBytes(ED25519_SEED_BYTES),
  signerFromSeed(seed: Uint8Array): Promise<DeviceSigner> {
    return Promise.resolve().then(() => {
      checkSeed(seed);
      // A private copy: the caller may wipe or reuse its buffer.
      const secret = seed.slice();
      return {
        publicKey: ed25519.getPublicKey(secret),
        sign: (data: Uint8Array) => Promise.resolve(ed25519.sign(data, secret)),
      };
    });
  },
  verify(publicKey, data, signature) {
    try {
      // RFC 8032 verification (zip215 off), as WebCrypto and the server do.
      return Promise.resolve(ed25519.verify(signature, data, publicKey, { zip215: false }));
    } catch {
      // noble throws on malformed keys or signatures: that is "does not verify".
      return Promise.resolve(false);
    }
  },
};
