import { hex } from "@scure/base";
import { describe, expect, it } from "vitest";
import { hkdfSha256, hmacSha256, hmacSha256Each, sha256, sha512 } from "./hkdf.ts";

function range(from: number, to: number): Uint8Array {
  return Uint8Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

// RFC 5869 appendix A, test cases 1-3 (SHA-256).
const CASES = [
  {
    name: "A.1 basic",
    ikm: new Uint8Array(22).fill(0x0b),
    salt: range(0x00, 0x0c),
    info: range(0xf0, 0xf9),
    length: 42,
    okm: "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
  },
  {
    name: "A.2 longer inputs",
    ikm: range(0x00, 0x4f),
    salt: range(0x60, 0xaf),
    info: range(0xb0, 0xff),
    length: 82,
    okm: "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
  },
  {
    name: "A.3 empty salt and info",
    ikm: new Uint8Array(22).fill(0x0b),
    salt: new Uint8Array(0),
    info: new Uint8Array(0),
    length: 42,
    okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
  },
];

describe("HKDF-SHA256", () => {
  it.each(CASES)("derives RFC 5869 $name", (vector) => {
    expect(hex.encode(hkdfSha256(vector.ikm, vector.salt, vector.info, vector.length))).toBe(vector.okm);
  });

  it("treats 32 zero bytes of salt as the empty salt, and stays right when called again", () => {
    const [vector] = CASES;
    if (vector === undefined) throw new Error("no vector");
    const zeroSalt = hkdfSha256(vector.ikm, new Uint8Array(32), vector.info, 42);
    expect(hex.encode(zeroSalt)).toBe(hex.encode(hkdfSha256(vector.ikm, new Uint8Array(0), vector.info, 42)));
    expect(hex.encode(hkdfSha256(vector.ikm, new Uint8Array(32), vector.info, 42))).toBe(hex.encode(zeroSalt));
    expect(hex.encode(hkdfSha256(vector.ikm, new Uint8Array(0), new Uint8Array(0), 42))).toBe(CASES[2]?.okm);
  });

  it("takes a string info as its UTF-8 bytes", () => {
    const ikm = new Uint8Array(32).fill(7);
    expect(hex.encode(hkdfSha256(ikm, new Uint8Array(0), "ctx", 32))).toBe(
      hex.encode(hkdfSha256(ikm, new Uint8Array(0), Uint8Array.of(0x63, 0x74, 0x78), 32)),
    );
  });
});

describe("SHA-2 and HMAC", () => {
  it("hashes 'abc' as FIPS 180 says", () => {
    const abc = new TextEncoder().encode("abc");
    expect(hex.encode(sha256(abc))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(hex.encode(sha512(abc))).toBe(
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    );
  });

  it("computes RFC 4231 test case 2 (HMAC-SHA256)", () => {
    const key = new TextEncoder().encode("Jefe");
    const data = new TextEncoder().encode("what do ya want for nothing?");
    expect(hex.encode(hmacSha256(key, data))).toBe("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  });

  it("gives each input the HMAC it gets alone when one key is set up for several", () => {
    const key = new TextEncoder().encode("Jefe");
    const inputs = [new TextEncoder().encode("what do ya want for nothing?"), Uint8Array.of(1), new Uint8Array(0)];
    expect(hmacSha256Each(key, inputs).map((mac) => hex.encode(mac))).toEqual(
      inputs.map((input) => hex.encode(hmacSha256(key, input))),
    );
    expect(hex.encode(hmacSha256Each(key, inputs)[0] ?? new Uint8Array(0))).toBe(
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    );
  });
});
