import { hex } from "@scure/base";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { mlKemGenerateKeyPair, nobleMlKem } from "../crypto/ml-kem.ts";
import { nobleEd25519 } from "../crypto/noble-ed25519.ts";
import { stablelibX25519 } from "@remessenger/protocol";
import { nodeEd25519 } from "./node-ed25519.ts";
import { nodeMlKem } from "./node-ml-kem.ts";
import { nodeX25519 } from "./node-x25519.ts";

describe("node:crypto X25519", () => {
  it("computes the RFC 7748 §5.2 and §6.1 vectors", async () => {
    expect(
      hex.encode(
        await nodeX25519.sharedSecret(
          hex.decode("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
          hex.decode("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"),
        ),
      ),
    ).toBe("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
    const alice = hex.decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    expect(hex.encode(await nodeX25519.publicKey(alice))).toBe(
      "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    );
    expect(
      hex.encode(
        await nodeX25519.sharedSecret(
          alice,
          hex.decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"),
        ),
      ),
    ).toBe("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  });

  it("refuses a small-order public key and keys of the wrong size", async () => {
    const pair = await nodeX25519.generateKeyPair();
    await expect(nodeX25519.sharedSecret(pair.privateKey, new Uint8Array(32))).rejects.toThrow(/small order/);
    await expect(nodeX25519.sharedSecret(pair.privateKey, new Uint8Array(31))).rejects.toThrow(/32 bytes/);
  });

  it("agrees with the portable provider for any keys, and its generated pairs are consistent", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        async (a, b) => {
          const publicB = await stablelibX25519.publicKey(b);
          expect(hex.encode(await nodeX25519.publicKey(a))).toBe(hex.encode(await stablelibX25519.publicKey(a)));
          expect(hex.encode(await nodeX25519.sharedSecret(a, publicB))).toBe(
            hex.encode(await stablelibX25519.sharedSecret(a, publicB)),
          );
        },
      ),
      { numRuns: 50 },
    );
    const pair = await nodeX25519.generateKeyPair();
    expect(hex.encode(await stablelibX25519.publicKey(pair.privateKey))).toBe(hex.encode(pair.publicKey));
  });
});

describe("node:crypto Ed25519", () => {
  it("signs RFC 8032 §7.1 TEST 2 and verifies it", async () => {
    const signer = await nodeEd25519.signerFromSeed(
      hex.decode("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"),
    );
    expect(hex.encode(signer.publicKey)).toBe("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
    const signature = await signer.sign(Uint8Array.of(0x72));
    expect(hex.encode(signature)).toBe(
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    );
    expect(await nodeEd25519.verify(signer.publicKey, Uint8Array.of(0x72), signature)).toBe(true);
    expect(await nodeEd25519.verify(signer.publicKey, Uint8Array.of(0x73), signature)).toBe(false);
    expect(await nodeEd25519.verify(new Uint8Array(5), Uint8Array.of(0x72), signature)).toBe(false);
  });

  it("gives the same keys and signatures as the portable provider for any seed and message", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ maxLength: 200 }),
        async (seed, message) => {
          const a = await nodeEd25519.signerFromSeed(seed);
          const b = await nobleEd25519.signerFromSeed(seed);
          expect(hex.encode(a.publicKey)).toBe(hex.encode(b.publicKey));
          expect(hex.encode(await a.sign(message))).toBe(hex.encode(await b.sign(message)));
        },
      ),
      { numRuns: 30 },
    );
  });
});

describe("node:crypto ML-KEM-768", () => {
  it("interoperates with the portable provider both ways, and refuses wrong sizes", () => {
    const pair = mlKemGenerateKeyPair();
    const toNoble = nodeMlKem.encapsulate(pair.publicKey);
    expect(hex.encode(nobleMlKem.decapsulate(toNoble.cipherText, pair.secretKey))).toBe(
      hex.encode(toNoble.sharedSecret),
    );
    const toNode = nobleMlKem.encapsulate(pair.publicKey);
    expect(hex.encode(nodeMlKem.decapsulate(toNode.cipherText, pair.secretKey))).toBe(hex.encode(toNode.sharedSecret));
    const tampered = toNode.cipherText.slice();
    tampered[0] = (tampered[0] ?? 0) ^ 1;
    expect(hex.encode(nodeMlKem.decapsulate(tampered, pair.secretKey))).not.toBe(hex.encode(toNode.sharedSecret));
    expect(() => nodeMlKem.encapsulate(new Uint8Array(10))).toThrow(/1184 bytes/);
  });
});
