import { hex } from "@scure/base";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { probeX25519, selectX25519Provider } from "./select-x25519-provider.ts";
import { stablelibX25519 } from "./stablelib-x25519.ts";
import { webCryptoX25519 } from "./webcrypto-x25519.ts";
import type { X25519Provider } from "./x25519.ts";

// RFC 7748 §5.2: scalar, u-coordinate, output.
const SCALAR_VECTORS = [
  {
    scalar: "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
    u: "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
    out: "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
  },
  {
    scalar: "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
    u: "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
    out: "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
  },
];
// RFC 7748 §5.2 iterated: k = u = 9; k, u = X25519(k, u), k.
const AFTER_1 = "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079";
const AFTER_1000 = "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51";
// RFC 7748 §6.1 Diffie-Hellman.
const ALICE_PRIVATE = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const ALICE_PUBLIC = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const BOB_PRIVATE = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
const BOB_PUBLIC = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
const SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

const PROVIDERS: X25519Provider[] = [webCryptoX25519, stablelibX25519];

describe.each(PROVIDERS)("X25519 provider $name", (provider) => {
  it.each(SCALAR_VECTORS)("computes the RFC 7748 §5.2 vector for scalar $scalar", async (vector) => {
    expect(hex.encode(await provider.sharedSecret(hex.decode(vector.scalar), hex.decode(vector.u)))).toBe(vector.out);
  });

  it("iterates the RFC 7748 §5.2 ladder to the 1 and 1,000 iteration values", async () => {
    let k: Uint8Array = new Uint8Array(32);
    k[0] = 9;
    let u: Uint8Array = k.slice();
    for (let i = 1; i <= 1000; i += 1) {
      const next = await provider.sharedSecret(k, u);
      u = k;
      k = next;
      if (i === 1) expect(hex.encode(k)).toBe(AFTER_1);
    }
    expect(hex.encode(k)).toBe(AFTER_1000);
  });

  it("derives the RFC 7748 §6.1 public keys and shared secret", async () => {
    expect(hex.encode(await provider.publicKey(hex.decode(ALICE_PRIVATE)))).toBe(ALICE_PUBLIC);
    expect(hex.encode(await provider.publicKey(hex.decode(BOB_PRIVATE)))).toBe(BOB_PUBLIC);
    expect(hex.encode(await provider.sharedSecret(hex.decode(ALICE_PRIVATE), hex.decode(BOB_PUBLIC)))).toBe(SHARED);
    expect(hex.encode(await provider.sharedSecret(hex.decode(BOB_PRIVATE), hex.decode(ALICE_PUBLIC)))).toBe(SHARED);
  });

  it("refuses a small-order public key instead of returning a zero secret", async () => {
    const pair = await provider.generateKeyPair();
    await expect(provider.sharedSecret(pair.privateKey, new Uint8Array(32))).rejects.toThrow(/small order/);
    const one = new Uint8Array(32);
    one[0] = 1;
    await expect(provider.sharedSecret(pair.privateKey, one)).rejects.toThrow(/small order/);
  });

  it("refuses keys of the wrong size", async () => {
    await expect(provider.sharedSecret(new Uint8Array(31), new Uint8Array(32))).rejects.toThrow(/32 bytes/);
    await expect(provider.publicKey(new Uint8Array(33))).rejects.toThrow(/32 bytes/);
  });

  it("generates key pairs whose public half matches the private one, and that agree", async () => {
    const a = await provider.generateKeyPair();
    const b = await provider.generateKeyPair();
    expect(hex.encode(await provider.publicKey(a.privateKey))).toBe(hex.encode(a.publicKey));
    expect(hex.encode(await provider.sharedSecret(a.privateKey, b.publicKey))).toBe(
      hex.encode(await provider.sharedSecret(b.privateKey, a.publicKey)),
    );
    expect(hex.encode(a.privateKey)).not.toBe(hex.encode(b.privateKey));
  });
});

describe("X25519 provider selection", () => {
  it("picks WebCrypto on Node 24, where it computes the RFC vector", async () => {
    expect(await probeX25519(webCryptoX25519)).toBe(true);
    expect((await selectX25519Provider()).name).toBe("webcrypto");
  });

  it("gives identical public keys and shared secrets from both providers for any keys", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        async (a, b) => {
          const publicA = await webCryptoX25519.publicKey(a);
          expect(hex.encode(await stablelibX25519.publicKey(a))).toBe(hex.encode(publicA));
          const publicB = await stablelibX25519.publicKey(b);
          expect(hex.encode(await webCryptoX25519.sharedSecret(b, publicA))).toBe(
            hex.encode(await stablelibX25519.sharedSecret(b, publicA)),
          );
          expect(hex.encode(await webCryptoX25519.sharedSecret(a, publicB))).toBe(
            hex.encode(await stablelibX25519.sharedSecret(b, publicA)),
          );
        },
      ),
      { numRuns: 50 },
    );
  });
});
