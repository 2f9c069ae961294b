import { hex } from "@scure/base";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Ed25519Provider } from "./device-signer.ts";
import { nobleEd25519 } from "./noble-ed25519.ts";
import { probe, selectEd25519Provider } from "./select-ed25519-provider.ts";
import { webCryptoEd25519 } from "./webcrypto-ed25519.ts";

// RFC 8032 §7.1 test vectors.
const VECTORS = [
  {
    name: "TEST 1 (empty message)",
    seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    publicKey: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    message: "",
    signature:
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  },
  {
    name: "TEST 2 (one byte)",
    seed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    publicKey: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    message: "72",
    signature:
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
  },
  {
    name: "TEST 3 (two bytes)",
    seed: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
    publicKey: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
    message: "af82",
    signature:
      "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
  },
  {
    name: "TEST SHA(abc)",
    seed: "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
    publicKey: "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
    message:
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    signature:
      "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
  },
];

const PROVIDERS: Ed25519Provider[] = [webCryptoEd25519, nobleEd25519];

describe.each(PROVIDERS)("Ed25519 provider $name", (provider) => {
  it.each(VECTORS)("derives the public key and signs $name as RFC 8032 says", async (vector) => {
    const signer = await provider.signerFromSeed(hex.decode(vector.seed));
    expect(hex.encode(signer.publicKey)).toBe(vector.publicKey);
    const signature = await signer.sign(hex.decode(vector.message));
    expect(hex.encode(signature)).toBe(vector.signature);
    expect(await provider.verify(signer.publicKey, hex.decode(vector.message), signature)).toBe(true);
  });

  it("rejects a signature over other bytes", async () => {
    const [vector] = VECTORS;
    const signer = await provider.signerFromSeed(hex.decode(vector!.seed));
    const signature = await signer.sign(Uint8Array.of(1, 2, 3));
    expect(await provider.verify(signer.publicKey, Uint8Array.of(1, 2, 4), signature)).toBe(false);
  });

  it("treats a malformed public key as not verifying, without throwing", async () => {
    expect(await provider.verify(new Uint8Array(5), Uint8Array.of(1), new Uint8Array(64))).toBe(false);
  });

  it("refuses a seed of the wrong size", async () => {
    await expect(provider.signerFromSeed(new Uint8Array(31))).rejects.toThrow(/32 bytes/);
  });

  it("generates distinct 32-byte seeds", () => {
    const a = provider.generateSeed();
    const b = provider.generateSeed();
    expect(a).toHaveLength(32);
    expect(hex.encode(a)).not.toBe(hex.encode(b));
  });
});

describe("provider selection", () => {
  it("picks WebCrypto on Node 24, where it signs the RFC vector", async () => {
    expect(await probe(webCryptoEd25519)).toBe(true);
    expect((await selectEd25519Provider()).name).toBe("webcrypto");
  });

  it("gives identical keys and signatures from both providers for any seed and message", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ maxLength: 300 }),
        async (seed, message) => {
          const a = await webCryptoEd25519.signerFromSeed(seed);
          const b = await nobleEd25519.signerFromSeed(seed);
          expect(hex.encode(a.publicKey)).toBe(hex.encode(b.publicKey));
          expect(hex.encode(await a.sign(message))).toBe(hex.encode(await b.sign(message)));
        },
      ),
      { numRuns: 50 },
    );
  });
});
