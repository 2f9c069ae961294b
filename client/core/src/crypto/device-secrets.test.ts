import { describe, expect, it } from "vitest";
import { stablelibX25519 } from "@remessenger/protocol";
import {
  DEVICE_SECRET_BYTES,
  DeviceSecretsError,
  decodeDeviceSecrets,
  encodeDeviceSecrets,
  generateDeviceSecrets,
} from "./device-secrets.ts";
import { nobleEd25519 } from "./noble-ed25519.ts";

const secrets = {
  ed25519Seed: new Uint8Array(32).fill(1),
  x25519PrivateKey: new Uint8Array(32).fill(2),
  storageKey: new Uint8Array(32).fill(3),
};
const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

describe("device secrets", () => {
  it("serialises as JSON of three base64 fields, the bytes of a remessenger-keys-v2 key file", () => {
    const json = JSON.parse(new TextDecoder().decode(encodeDeviceSecrets(secrets))) as Record<string, string>;
    expect(json).toEqual({
      ed25519Seed: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
      x25519PrivateKey: "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
      storageKey: "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=",
    });
    expect(decodeDeviceSecrets(encodeDeviceSecrets(secrets))).toEqual(secrets);
  });

  it("refuses bytes that are not a device's secrets", () => {
    const good = JSON.parse(new TextDecoder().decode(encodeDeviceSecrets(secrets))) as Record<string, string>;
    const bad = (value: unknown): Uint8Array => utf8(JSON.stringify(value));
    expect(() => decodeDeviceSecrets(utf8("not json"))).toThrow(DeviceSecretsError);
    expect(() => decodeDeviceSecrets(bad(null))).toThrow(DeviceSecretsError);
    expect(() => decodeDeviceSecrets(bad({ ...good, storageKey: undefined }))).toThrow("storageKey missing");
    expect(() => decodeDeviceSecrets(bad({ ...good, ed25519Seed: "AQID" }))).toThrow("ed25519Seed is not 32 bytes");
    expect(() => decodeDeviceSecrets(bad({ ...good, x25519PrivateKey: "%%%" }))).toThrow(DeviceSecretsError);
  });

  it("generates three fresh 32-byte secrets from the platform's providers", async () => {
    const a = await generateDeviceSecrets({ ed25519: nobleEd25519, x25519: stablelibX25519 });
    const b = await generateDeviceSecrets({ ed25519: nobleEd25519, x25519: stablelibX25519 });
    for (const value of [a, b].flatMap((s) => [s.ed25519Seed, s.x25519PrivateKey, s.storageKey])) {
      expect(value).toHaveLength(DEVICE_SECRET_BYTES);
    }
    expect(a.storageKey).not.toEqual(b.storageKey);
    expect(a.ed25519Seed).not.toEqual(b.ed25519Seed);
    expect(decodeDeviceSecrets(encodeDeviceSecrets(a))).toEqual(a);
  });
});
