import { describe, expect, it } from "vitest";
import { safetyNumber } from "./safety-number.ts";

const key = (n: number): Uint8Array => new Uint8Array(32).fill(n);
const alice = { userId: "ualice", identityKeys: [key(1), key(2)] };
const bob = { userId: "ubob", identityKeys: [key(3)] };

describe("safety numbers", () => {
  it("is the same 60 digits for both users, whatever the order of users or devices", () => {
    const a = safetyNumber(alice, bob);
    const b = safetyNumber(bob, { ...alice, identityKeys: [key(2), key(1)] });
    expect(a).toEqual(b);
    expect(a.digits).toMatch(/^(\d{5} ){11}\d{5}$/);
    expect(a.qr).toMatch(/^REMESSENGER1[A-Z2-7]+$/);
  });

  it("changes when any device key changes, or a device is added", () => {
    const base = safetyNumber(alice, bob).digits;
    expect(safetyNumber(alice, { ...bob, identityKeys: [key(4)] }).digits).not.toBe(base);
    expect(safetyNumber({ ...alice, identityKeys: [key(1), key(2), key(5)] }, bob).digits).not.toBe(base);
  });
});
