import { describe, expect, it } from "vitest";
import { nobleEd25519 } from "../crypto/noble-ed25519.ts";
import {
  APPROVAL_VALIDITY_MS,
  LinkFormatError,
  approveLink,
  decodeApproval,
  decodeLinkCode,
  encodeApproval,
  encodeLinkCode,
} from "./linking.ts";

describe("linking texts", () => {
  it("round-trips a link code, and takes a bare key", () => {
    const key = new Uint8Array(32).fill(7);
    const code = encodeLinkCode(key);
    expect(code.startsWith("rmlink1.")).toBe(true);
    expect(decodeLinkCode(`  ${code} `)).toEqual(key);
    expect(decodeLinkCode(code.slice("rmlink1.".length))).toEqual(key);
  });

  it("refuses a code that carries no 32-byte key", () => {
    expect(() => decodeLinkCode("rmlink1.AAAA")).toThrow(LinkFormatError);
    expect(() => decodeLinkCode("not base64!")).toThrow(/not a link code/);
  });

  it("signs an approval valid for ten minutes that decodes to the same token", async () => {
    const signer = await nobleEd25519.signerFromSeed(nobleEd25519.generateSeed());
    const key = new Uint8Array(32).fill(9);
    const token = await approveLink(signer, { userId: "u-1", deviceId: "d-1", serverUrl: "ws://s" }, key, 1_000);
    expect(token.expiresAtMs).toBe(1_000 + APPROVAL_VALIDITY_MS);
    expect(decodeApproval(encodeApproval(token))).toEqual(token);
    expect(() => decodeApproval("e30")).toThrow(/not a link approval \(fields missing\)/);
  });
});
