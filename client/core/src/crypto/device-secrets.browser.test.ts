// Device secrets kept by IndexedDbKeyVault in a real Chromium: what a browser or app client does
// with its keys at rest (the Node client uses the key file, node/key-file.ts).
import { afterEach, describe, expect, test } from "vitest";
import { request } from "../runtime/indexeddb-request.ts";
import { DeviceSecretsError, unwrapDeviceSecrets, wrapDeviceSecrets } from "./device-secrets.ts";
import { IndexedDbKeyVault, KeyVaultError } from "./key-vault.ts";

const createdDbs = new Set<string>();
afterEach(async () => {
  for (const name of createdDbs) await request(indexedDB.deleteDatabase(name));
  createdDbs.clear();
});

const secrets = {
  ed25519Seed: crypto.getRandomValues(new Uint8Array(32)),
  x25519PrivateKey: crypto.getRandomValues(new Uint8Array(32)),
  storageKey: crypto.getRandomValues(new Uint8Array(32)),
};

describe("device secrets in IndexedDbKeyVault", () => {
  test("wraps the secrets so that only this vault opens them, and nothing of them shows in the clear", async () => {
    const name = `device-secrets-test-${crypto.randomUUID()}`;
    createdDbs.add(name);
    const vault = await IndexedDbKeyVault.open(name, "device");
    const wrapped = await wrapDeviceSecrets(vault, secrets);
    const text = new TextDecoder("latin1").decode(wrapped);
    expect(text).not.toContain("ed25519Seed");
    expect(await unwrapDeviceSecrets(await IndexedDbKeyVault.open(name, "device"), wrapped)).toEqual(secrets);

    const other = await IndexedDbKeyVault.open(name, "another");
    await expect(unwrapDeviceSecrets(other, wrapped)).rejects.toBeInstanceOf(KeyVaultError);
    await expect(unwrapDeviceSecrets(vault, await vault.wrap(new Uint8Array([1, 2])))).rejects.toBeInstanceOf(
      DeviceSecretsError,
    );
  });
});
