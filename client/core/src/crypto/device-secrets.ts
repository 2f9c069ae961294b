/**
 * The device-secrets format: which secret keys a device has, and the bytes a
 * vault keeps them as. Every client uses it: the Node key file wraps these
 * bytes under a keychain key or a passphrase (node/key-file.ts), the browser
 * under IndexedDbKeyVault's non-extractable key (wrapDeviceSecrets).
 *
 * The serialisation is UTF-8 JSON of three fields, each the standard base64
 * of exactly 32 bytes: `ed25519Seed` (the identity signing key's seed),
 * `x25519PrivateKey` (the identity DH key) and `storageKey` (encrypts the E2E
 * state in the client store). Key files of format "remessenger-keys-v2" hold
 * exactly these bytes: a change here needs a new format name there.
 */
import { base64 } from "@scure/base";
import { type X25519Provider, ErrorCode, RemessengerError } from "@remessenger/protocol";
import type { Ed25519Provider } from "./device-signer.ts";
import type { KeyVault } from "./key-vault.ts";

export const DEVICE_SECRET_BYTES = 32;

/** The device's secret keys, in the clear: only ever in memory. */
export interface DeviceSecrets {
  ed25519Seed: Uint8Array;
  x25519PrivateKey: Uint8Array;
  storageKey: Uint8Array;
}

const FIELDS = ["ed25519Seed", "x25519PrivateKey", "storageKey"] as const;

/** Bytes that are not a device's secrets in this format. */
export class DeviceSecretsError extends RemessengerError {
  override readonly name = "DeviceSecretsError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message, options);
  }
}

/** Fresh secrets for a new device, from the platform's curve providers. */
export async function generateDeviceSecrets(providers: {
  ed25519: Pick<Ed25519Provider, "generateSeed">;
  x25519: Pick<X25519Provider, "generateKeyPair">;
}): Promise<DeviceSecrets> {
  return {
    ed25519Seed: providers.ed25519.generateSeed(),
    x25519PrivateKey: (await providers.x25519.generateKeyPair()).privateKey,
    storageKey: crypto.getRandomValues(new Uint8Array(DEVICE_SECRET_BYTES)),
  };
}

export function encodeDeviceSecrets(secrets: DeviceSecrets): Uint8Array {
  const json = JSON.stringify(Object.fromEntries(FIELDS.map((name) => [name, base64.encode(secrets[name])])));
  return new TextEncoder().encode(json);
}

/** The secrets in `bytes`; DeviceSecretsError when a field is missing, not base64 or not 32 bytes. */
export function decodeDeviceSecrets(bytes: Uint8Array): DeviceSecrets {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch (cause) {
    throw new DeviceSecretsError("device secrets: not JSON", { cause });
  }
  if (typeof value !== "object" || value === null) throw new DeviceSecretsError("device secrets: not an object");
  const record = value as Record<string, unknown>;
  const field = (name: (typeof FIELDS)[number]): Uint8Array => {
    const text = record[name];
    if (typeof text !== "string") throw new DeviceSecretsError(`device secrets: ${name} missing`);
    let out: Uint8Array;
    try {
      out = base64.decode(text);
    } catch (cause) {
      throw new DeviceSecretsError(`device secrets: ${name} is not base64`, { cause });
    }
    if (out.length !== DEVICE_SECRET_BYTES) {
      throw new DeviceSecretsError(`device secrets: ${name} is not ${DEVICE_SECRET_BYTES} bytes`);
    }
    return out;
  };
  return {
    ed25519Seed: field("ed25519Seed"),
    x25519PrivateKey: field("x25519PrivateKey"),
    storageKey: field("storageKey"),
  };
}

/** The secrets wrapped by `vault` for rest; the serialised plaintext is zeroed once wrapped. */
export async function wrapDeviceSecrets(vault: KeyVault, secrets: DeviceSecrets): Promise<Uint8Array> {
  const plain = encodeDeviceSecrets(secrets);
  try {
    return await vault.wrap(plain);
  } finally {
    plain.fill(0);
  }
}

/** The secrets `wrapDeviceSecrets` wrapped; rejects (KeyVaultError, DeviceSecretsError) on anything else. */
export async function unwrapDeviceSecrets(vault: KeyVault, wrapped: Uint8Array): Promise<DeviceSecrets> {
  const plain = await vault.unwrap(wrapped);
  try {
    return decodeDeviceSecrets(plain);
  } finally {
    plain.fill(0);
  }
}
