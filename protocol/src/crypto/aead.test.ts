import { hex } from "@scure/base";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { aeadOpen, aeadOpenRandomNonce, aeadSeal, aeadSealRandomNonce } from "./aead.ts";

// draft-irtf-cfrg-xchacha-03, appendix A.3.1 (AEAD_XChaCha20_Poly1305).
const PLAINTEXT = new TextEncoder().encode(
  "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
);
const AAD = hex.decode("50515253c0c1c2c3c4c5c6c7");
const KEY = hex.decode("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
const NONCE = hex.decode("404142434445464748494a4b4c4d4e4f5051525354555657");
const CIPHERTEXT =
  "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e";
const TAG = "c0875924c1c7987947deafd8780acf49";

describe("XChaCha20-Poly1305", () => {
  it("seals the draft-irtf-cfrg-xchacha A.3.1 vector", () => {
    expect(hex.encode(aeadSeal(KEY, NONCE, PLAINTEXT, AAD))).toBe(CIPHERTEXT + TAG);
  });

  it("opens the draft-irtf-cfrg-xchacha A.3.1 vector", () => {
    const opened = aeadOpen(KEY, NONCE, hex.decode(CIPHERTEXT + TAG), AAD);
    expect(opened && new TextDecoder().decode(opened)).toBe(new TextDecoder().decode(PLAINTEXT));
  });

  it("refuses the vector with any single bit flipped in ciphertext, tag, associated data, nonce or key", () => {
    const sealed = hex.decode(CIPHERTEXT + TAG);
    fc.assert(
      fc.property(
        fc.constantFrom("sealed", "aad", "nonce", "key"),
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        (where, at, bit) => {
          const parts = { sealed: sealed.slice(), aad: AAD.slice(), nonce: NONCE.slice(), key: KEY.slice() };
          const target = parts[where];
          const index = at % target.length;
          target[index] = (target[index] ?? 0) ^ (1 << bit);
          expect(aeadOpen(parts.key, parts.nonce, parts.sealed, parts.aad)).toBeUndefined();
        },
      ),
    );
  });

  it("refuses truncated input and wrong key or nonce sizes", () => {
    expect(aeadOpen(KEY, NONCE, new Uint8Array(15))).toBeUndefined();
    expect(() => aeadSeal(new Uint8Array(31), NONCE, PLAINTEXT)).toThrow(/32 bytes/);
    expect(() => aeadSeal(KEY, new Uint8Array(12), PLAINTEXT)).toThrow(/24 bytes/);
  });

  it("round-trips any input with a random nonce, and fresh nonces differ", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), fc.uint8Array({ maxLength: 64 }), (plaintext, ad) => {
        const a = aeadSealRandomNonce(KEY, plaintext, ad);
        const b = aeadSealRandomNonce(KEY, plaintext, ad);
        expect(hex.encode(a)).not.toBe(hex.encode(b));
        expect(hex.encode(aeadOpenRandomNonce(KEY, a, ad) ?? Uint8Array.of(1, 2, 3))).toBe(hex.encode(plaintext));
        expect(aeadOpenRandomNonce(KEY, a, Uint8Array.of(...ad, 0))).toBeUndefined();
      }),
      { numRuns: 100 },
    );
  });
});
