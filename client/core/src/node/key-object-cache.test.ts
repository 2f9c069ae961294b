import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { KeyObjectCache } from "./key-object-cache.ts";

function rawPublicKey(): Uint8Array {
  const jwk = generateKeyPairSync("x25519").publicKey.export({ format: "jwk" });
  return new Uint8Array(Buffer.from(jwk.x ?? "", "base64url"));
}

function importer(raw: Uint8Array, counter: { imports: number }) {
  return () => {
    counter.imports += 1;
    return createPublicKey({
      key: { kty: "OKP", crv: "X25519", x: Buffer.from(raw).toString("base64url") },
      format: "jwk",
    });
  };
}

describe("KeyObjectCache", () => {
  it("imports a key once while it is cached, by its bytes wherever they sit", () => {
    const cache = new KeyObjectCache(2);
    const counter = { imports: 0 };
    const raw = rawPublicKey();
    const first = cache.get(raw, importer(raw, counter));
    const inside = new Uint8Array(40);
    inside.set(raw, 8);
    expect(cache.get(inside.subarray(8), importer(raw, counter))).toBe(first);
    expect(counter.imports).toBe(1);
  });

  it("drops the least recently used key beyond its capacity, and imports it again when asked", () => {
    const cache = new KeyObjectCache(2);
    const counter = { imports: 0 };
    const [a, b, c] = [rawPublicKey(), rawPublicKey(), rawPublicKey()];
    cache.get(a, importer(a, counter));
    cache.get(b, importer(b, counter));
    cache.get(a, importer(a, counter)); // a is now the most recent: b goes next
    cache.get(c, importer(c, counter));
    expect(counter.imports).toBe(3);
    cache.get(a, importer(a, counter));
    expect(counter.imports).toBe(3);
    const again = cache.get(b, importer(b, counter));
    expect(counter.imports).toBe(4);
    expect(new Uint8Array(Buffer.from(again.export({ format: "jwk" }).x ?? "", "base64url"))).toEqual(b);
  });
});
