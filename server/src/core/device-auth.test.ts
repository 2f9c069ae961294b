import { generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { isError, CHALLENGE_TTL_MS, ErrorCode } from "@remessenger/protocol";
import {
  ChallengeBook,
  MAX_OUTSTANDING_CHALLENGES,
  SESSION_TOKEN_TTL_MS,
  SessionTokens,
  verifyDeviceSignature,
} from "./device-auth.ts";

function manualClock(start = 1_000_000): { nowMs(): number; advance(ms: number): void } {
  let now = start;
  return { nowMs: () => now, advance: (ms) => (now += ms) };
}

let counter = 0;
function countingRandom(n: number): Uint8Array {
  const out = new Uint8Array(n);
  new DataView(out.buffer).setUint32(0, ++counter);
  return out;
}

const unauthenticated = (e: unknown): boolean => isError(e, ErrorCode.ERROR_CODE_UNAUTHENTICATED);

describe("ChallengeBook", () => {
  it("accepts a challenge once, before it expires", () => {
    const clock = manualClock();
    const book = new ChallengeBook(clock, countingRandom);
    const a = book.issue();
    const b = book.issue();
    book.consume(a.nonce);
    expect(() => book.consume(a.nonce)).toThrow(expect.toSatisfy(unauthenticated));
    clock.advance(CHALLENGE_TTL_MS + 1);
    expect(() => book.consume(b.nonce)).toThrow(/expired/);
  });

  it("forgets the oldest challenges beyond its bound", () => {
    const book = new ChallengeBook(manualClock(), countingRandom);
    const first = book.issue();
    for (let i = 0; i < MAX_OUTSTANDING_CHALLENGES; i++) book.issue();
    expect(book.size).toBe(MAX_OUTSTANDING_CHALLENGES);
    expect(() => book.consume(first.nonce)).toThrow(expect.toSatisfy(unauthenticated));
  });
});

describe("verifyDeviceSignature", () => {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const raw = new Uint8Array(Buffer.from(publicKey.export({ format: "jwk" }).x ?? "", "base64url"));
  const data = new TextEncoder().encode("proof");

  it("accepts the key's signature and refuses a changed message or a short key", () => {
    const signature = new Uint8Array(sign(null, data, privateKey));
    expect(() => verifyDeviceSignature(raw, data, signature)).not.toThrow();
    expect(() => verifyDeviceSignature(raw, new TextEncoder().encode("proof!"), signature)).toThrow(/does not verify/);
    expect(() => verifyDeviceSignature(raw.subarray(1), data, signature)).toThrow(/malformed/);
  });
});

describe("SessionTokens", () => {
  it("round-trips a device id, and refuses tampered, foreign and expired tokens", () => {
    const clock = manualClock();
    const tokens = new SessionTokens(new Uint8Array(32).fill(7), clock);
    const token = tokens.issue("dabc");
    expect(tokens.verify(token)).toBe("dabc");
    expect(() => tokens.verify(token.replace("dabc", "dabd"))).toThrow(expect.toSatisfy(unauthenticated));
    expect(() => new SessionTokens(new Uint8Array(32).fill(8), clock).verify(token)).toThrow(/invalid/);
    expect(() => tokens.verify("garbage")).toThrow(/malformed/);
    clock.advance(SESSION_TOKEN_TTL_MS + 1);
    expect(() => tokens.verify(token)).toThrow(/expired/);
  });
});
