/**
 * Where a device's secrets rest between runs, as profile opening needs it:
 * read them (none yet is a normal answer: a profile not made yet) and write
 * them durably. Two keepers exist: the Node key file (the CLI wraps
 * node/key-file.ts in one), and `storedDeviceSecrets` below, which wraps the
 * secrets in any KeyVault (IndexedDbKeyVault in a browser) and keeps the
 * wrapped bytes in the client store itself.
 *
 * The wrapped bytes are the E2E-state record DEVICE_SECRETS_RECORD: every
 * ClientStore adapter has that port, and its compare-and-set write makes the
 * first write win when two tabs create a profile at once (the loser gets
 * StaleE2eStateError and opens the winner's). The record is the vault's
 * ciphertext; the clear secrets never reach the store.
 */
import { type DeviceSecrets, unwrapDeviceSecrets, wrapDeviceSecrets } from "../crypto/device-secrets.ts";
import type { KeyVault } from "../crypto/key-vault.ts";
import type { E2eStateStore } from "../store/client-store.ts";

/** A device's secrets at rest. */
export interface DeviceSecretsKeeper {
  /** Whether secrets are kept, without opening them (no passphrase asked, no vault used). */
  has(): Promise<boolean>;
  /** The secrets kept; undefined when none were written yet; rejects when they are there but do not open. */
  read(): Promise<DeviceSecrets | undefined>;
  /** Keeps `secrets`, durably before it resolves. */
  write(secrets: DeviceSecrets): Promise<void>;
}

/** The E2E-state key of the vault-wrapped device secrets (no E2E record family uses the `device/` prefix). */
export const DEVICE_SECRETS_RECORD = "device/secrets";

/** Secrets wrapped by `vault`, kept in `store` (a browser's IndexedDbClientStore, or any other). */
export function storedDeviceSecrets(store: E2eStateStore, vault: KeyVault): DeviceSecretsKeeper {
  return {
    async has() {
      return (await store.readE2e([DEVICE_SECRETS_RECORD])).has(DEVICE_SECRETS_RECORD);
    },
    async read() {
      const record = (await store.readE2e([DEVICE_SECRETS_RECORD])).get(DEVICE_SECRETS_RECORD);
      return record === undefined ? undefined : unwrapDeviceSecrets(vault, record.value);
    },
    async write(secrets) {
      const record = (await store.readE2e([DEVICE_SECRETS_RECORD])).get(DEVICE_SECRETS_RECORD);
      const value = await wrapDeviceSecrets(vault, secrets);
      await store.writeE2e([{ key: DEVICE_SECRETS_RECORD, expectedVersion: record?.version ?? 0, value }]);
    },
  };
}
