import { hex } from "@scure/base";
import { describe, expect, it } from "vitest";
import {
  ML_KEM_CIPHERTEXT_BYTES,
  ML_KEM_PUBLIC_KEY_BYTES,
  ML_KEM_SECRET_KEY_BYTES,
  mlKemDecapsulate,
  mlKemEncapsulate,
  mlKemGenerateKeyPair,
} from "./ml-kem.ts";

describe("ML-KEM-768", () => {
  it("has FIPS 203 sizes and recovers the encapsulated secret", () => {
    const pair = mlKemGenerateKeyPair();
    expect(pair.publicKey).toHaveLength(ML_KEM_PUBLIC_KEY_BYTES);
    expect(pair.secretKey).toHaveLength(ML_KEM_SECRET_KEY_BYTES);
    const { cipherText, sharedSecret } = mlKemEncapsulate(pair.publicKey);
    expect(cipherText).toHaveLength(ML_KEM_CIPHERTEXT_BYTES);
    expect(hex.encode(mlKemDecapsulate(cipherText, pair.secretKey))).toBe(hex.encode(sharedSecret));
  });

  it("gives another secret for a tampered ciphertext (implicit rejection)", () => {
    const pair = mlKemGenerateKeyPair();
    const { cipherText, sharedSecret } = mlKemEncapsulate(pair.publicKey);
    cipherText[5] = (cipherText[5] ?? 0) ^ 1;
    expect(hex.encode(mlKemDecapsulate(cipherText, pair.secretKey))).not.toBe(hex.encode(sharedSecret));
  });

  it("refuses inputs of the wrong size", () => {
    expect(() => mlKemEncapsulate(new Uint8Array(100))).toThrow(/1184 bytes/);
    expect(() => mlKemDecapsulate(new Uint8Array(10), new Uint8Array(ML_KEM_SECRET_KEY_BYTES))).toThrow(/1088 bytes/);
  });
});
