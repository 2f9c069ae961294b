// Opening a profile from a store and its kept secrets, without a server: what is checked,
// what is remembered, and the errors an app shows. Registering is covered against the real
// server (client/test/open-profile.test.ts).
import { describe, expect, it } from "vitest";
import { DeviceSecretsError, generateDeviceSecrets } from "../crypto/device-secrets.ts";
import { KeyVaultError } from "../crypto/key-vault.ts";
import { MemoryKeyVault } from "../crypto/memory-key-vault.ts";
import { nobleEd25519 } from "../crypto/noble-ed25519.ts";
import { MemoryClientStore } from "../store/memory-client-store.ts";
import type { DeviceProfile } from "../store/client-store.ts";
import { stablelibX25519 } from "@remessenger/protocol";
import {
  NoProfileError,
  ProfileSecretsError,
  deviceKeysOf,
  ensureDeviceSecrets,
  identityKeyText,
  openProfile,
} from "./open-profile.ts";
import { DEVICE_SECRETS_RECORD, storedDeviceSecrets } from "./secrets-keeper.ts";

const providers = { ed25519: nobleEd25519, x25519: stablelibX25519 };

function profileOf(overrides: Partial<DeviceProfile> = {}): DeviceProfile {
  return {
    serverUrl: "http://127.0.0.1:9",
    userId: "u-me",
    deviceId: "d-me",
    displayName: "Me",
    registeredAtMs: 1,
    ...overrides,
  };
}

/** A store holding a finished profile and its vault-wrapped secrets. */
async function madeProfile(overrides: Partial<DeviceProfile> = {}) {
  const store = new MemoryClientStore();
  const vault = new MemoryKeyVault();
  const keeper = storedDeviceSecrets(store, vault);
  const secrets = await ensureDeviceSecrets(keeper, providers);
  const keys = await deviceKeysOf(secrets, providers);
  await store.saveProfile(profileOf({ identityKey: identityKeyText(keys.signer.publicKey), ...overrides }));
  return { store, vault, keeper, keys };
}

describe("openProfile", () => {
  it("returns a messenger of the stored profile, built with the device's key and not started", async () => {
    const { store, keeper, keys } = await madeProfile();
    const messenger = await openProfile({ store, secrets: keeper, providers });
    expect(messenger.profile).toMatchObject({ userId: "u-me", deviceId: "d-me" });
    expect(messenger.lifecycle.value).toBe("idle");
    expect(messenger.profile.identityKey).toBe(identityKeyText(keys.signer.publicKey));
  });

  it("keeps the secrets only wrapped in the store", async () => {
    const { store, keys } = await madeProfile();
    const record = (await store.readE2e([DEVICE_SECRETS_RECORD])).get(DEVICE_SECRETS_RECORD);
    const text = new TextDecoder("latin1").decode(record?.value);
    expect(record).toBeDefined();
    expect(text).not.toContain("ed25519Seed");
    expect(keys.e2e.storageKey).toHaveLength(32);
  });

  it("remembers endpoints named at opening, and saves nothing when they change nothing", async () => {
    const { store, keeper } = await madeProfile();
    const opened = await openProfile({
      store,
      secrets: keeper,
      providers,
      endpoints: { serverUrl: "http://b:8080", resolver: { host: "10.0.0.1", port: 53 } },
    });
    expect(opened.profile).toMatchObject({ serverUrl: "http://b:8080", resolver: { host: "10.0.0.1", port: 53 } });
    expect(await store.getProfile()).toEqual(opened.profile);
    const again = await openProfile({ store, secrets: keeper, providers, endpoints: { serverUrl: "http://b:8080" } });
    expect(again.profile).toEqual(opened.profile);
  });

  it("records the identity key of a profile saved before it was kept", async () => {
    const { store, keeper, keys } = await madeProfile();
    await store.saveProfile(profileOf());
    expect((await store.getProfile())?.identityKey).toBeUndefined();
    await openProfile({ store, secrets: keeper, providers });
    expect((await store.getProfile())?.identityKey).toBe(identityKeyText(keys.signer.publicKey));
  });

  it("refuses an empty store, and says when keys were left by a creation that never finished", async () => {
    const store = new MemoryClientStore();
    const keeper = storedDeviceSecrets(store, new MemoryKeyVault());
    const empty = openProfile({ store, secrets: keeper, providers });
    await expect(empty).rejects.toBeInstanceOf(NoProfileError);
    await expect(empty).rejects.toMatchObject({ hasUnfinishedSecrets: false });

    const secrets = await ensureDeviceSecrets(keeper, providers);
    await expect(openProfile({ store, secrets: keeper, providers })).rejects.toMatchObject({
      name: "NoProfileError",
      hasUnfinishedSecrets: true,
    });
    // The next creation reuses those keys rather than making a second set.
    expect(await ensureDeviceSecrets(keeper, providers)).toEqual(secrets);
  });

  it("refuses secrets another vault wrapped, with the vault's refusal as the cause", async () => {
    const { store } = await madeProfile();
    const opening = openProfile({ store, secrets: storedDeviceSecrets(store, new MemoryKeyVault()), providers });
    await expect(opening).rejects.toMatchObject({ name: "ProfileSecretsError", problem: "unreadable" });
    await expect(opening.catch((error: unknown) => (error as Error).cause)).resolves.toBeInstanceOf(KeyVaultError);
  });

  it("refuses bytes that unwrap but are not device secrets", async () => {
    const { store, vault } = await madeProfile();
    const record = (await store.readE2e([DEVICE_SECRETS_RECORD])).get(DEVICE_SECRETS_RECORD);
    await store.writeE2e([
      { key: DEVICE_SECRETS_RECORD, expectedVersion: record?.version ?? 0, value: await vault.wrap(Uint8Array.of(1)) },
    ]);
    const opening = openProfile({ store, secrets: storedDeviceSecrets(store, vault), providers });
    await expect(opening.catch((error: unknown) => (error as Error).cause)).resolves.toBeInstanceOf(DeviceSecretsError);
  });

  it("refuses a profile whose kept secrets are another device's", async () => {
    const { store, keeper } = await madeProfile();
    const other = await generateDeviceSecrets(providers);
    await keeper.write(other);
    await expect(openProfile({ store, secrets: keeper, providers })).rejects.toMatchObject({
      name: "ProfileSecretsError",
      problem: "mismatch",
    });
  });

  it("refuses a profile whose secrets are gone", async () => {
    const store = new MemoryClientStore();
    await store.saveProfile(profileOf());
    const opening = openProfile({ store, secrets: storedDeviceSecrets(store, new MemoryKeyVault()), providers });
    await expect(opening).rejects.toBeInstanceOf(ProfileSecretsError);
    await expect(opening).rejects.toMatchObject({ problem: "missing" });
  });
});
