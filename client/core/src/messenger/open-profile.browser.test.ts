// Opening a profile as the browser app does, in a real Chromium: the device secrets wrapped by
// IndexedDbKeyVault (a non-extractable WebCrypto key) and kept in IndexedDbClientStore with the
// profile, then opened again by fresh objects on the same databases, as after a page reload, up to
// a built Messenger. No server: registering is covered by client/test/open-profile.test.ts.
import { afterEach, describe, expect, test } from "vitest";
import { IndexedDbKeyVault } from "../crypto/key-vault.ts";
import { request } from "../runtime/indexeddb-request.ts";
import { IndexedDbClientStore } from "../store/indexeddb-client-store.ts";
import { deviceKeysOf, ensureDeviceSecrets, identityKeyText, openProfile } from "./open-profile.ts";
import { storedDeviceSecrets } from "./secrets-keeper.ts";

const createdDbs = new Set<string>();
const openStores: IndexedDbClientStore[] = [];

function freshDbName(label: string): string {
  const name = `open-profile-test-${label}-${crypto.randomUUID()}`;
  createdDbs.add(name);
  return name;
}

afterEach(async () => {
  for (const store of openStores.splice(0)) await store.close();
  for (const name of createdDbs) await request(indexedDB.deleteDatabase(name));
  createdDbs.clear();
});

async function storeNamed(name: string): Promise<IndexedDbClientStore> {
  const store = await IndexedDbClientStore.open(name);
  openStores.push(store);
  return store;
}

describe("a browser profile in IndexedDB", () => {
  test("is saved with its vault-wrapped secrets and opens again, after a reload, to a built messenger", async () => {
    const storeDb = freshDbName("store");
    const vaultDb = freshDbName("vault");
    // Closed below, as a reload closes it.
    const store = await IndexedDbClientStore.open(storeDb);
    const secrets = await ensureDeviceSecrets(
      storedDeviceSecrets(store, await IndexedDbKeyVault.open(vaultDb, "device")),
    );
    const keys = await deviceKeysOf(secrets);
    // What createProfile saves once the server registered the device.
    const profile = {
      serverUrl: "https://chat.example",
      userId: "u-browser",
      deviceId: "d-browser",
      displayName: "Browser",
      registeredAtMs: 1,
      identityKey: identityKeyText(keys.signer.publicKey),
    };
    await store.saveProfile(profile);
    await store.close();

    // The reload: new store and vault objects on the same databases.
    const reloaded = await storeNamed(storeDb);
    const vault = await IndexedDbKeyVault.open(vaultDb, "device");
    const messenger = await openProfile({ store: reloaded, secrets: storedDeviceSecrets(reloaded, vault) });
    expect(messenger.profile).toEqual(profile);
    expect(messenger.lifecycle.value).toBe("idle");
    expect(await storedDeviceSecrets(reloaded, vault).read()).toEqual(secrets);
  });

  test("does not open with another vault key's secrets", async () => {
    const storeDb = freshDbName("store");
    const vaultDb = freshDbName("vault");
    const store = await storeNamed(storeDb);
    const secrets = await ensureDeviceSecrets(
      storedDeviceSecrets(store, await IndexedDbKeyVault.open(vaultDb, "device")),
    );
    const keys = await deviceKeysOf(secrets);
    await store.saveProfile({
      serverUrl: "https://chat.example",
      userId: "u-browser",
      deviceId: "d-browser",
      displayName: "Browser",
      registeredAtMs: 1,
      identityKey: identityKeyText(keys.signer.publicKey),
    });
    const other = await IndexedDbKeyVault.open(vaultDb, "another-device");
    await expect(openProfile({ store, secrets: storedDeviceSecrets(store, other) })).rejects.toMatchObject({
      name: "ProfileSecretsError",
      problem: "unreadable",
    });
  });
});
