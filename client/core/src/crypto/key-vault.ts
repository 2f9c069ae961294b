/**
 * KeyVault: how a client keeps its secret keys at rest (docs/client-core.md, "keys"). The
 * device's keys (Ed25519 seed, X25519 identity key, the storage key that
 * encrypts sessions and prekeys in the ClientStore) are serialized by the
 * caller (device-secrets.ts) and wrapped here; nothing wrapped is ever
 * stored in the clear.
 *
 * Implementations: IndexedDbKeyVault below (browser and app WebViews: a
 * non-extractable AES-256-GCM WebCrypto key kept in IndexedDB, which script
 * can use but never read out), and the Node key file (node/key-file.ts: a
 * key from the OS keychain, else scrypt of a passphrase).
 */
import { committed, request } from "../runtime/indexeddb-request.ts";
import { ErrorCode, RemessengerError } from "@remessenger/protocol";

export interface KeyVault {
  /** Encrypts `secret` for rest. */
  wrap(secret: Uint8Array): Promise<Uint8Array>;
  /** The secret; rejects when `wrapped` was not made by this vault or was changed. */
  unwrap(wrapped: Uint8Array): Promise<Uint8Array>;
}

const DB_VERSION = 1;
const STORE = "keys";
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Why a vault refused: its wrapping key is unusable, or `unwrap` got data it did not make. */
export class KeyVaultError extends RemessengerError {
  override readonly name = "KeyVaultError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_UNAUTHENTICATED, message, options);
  }
}

/** A stored key we may use: a non-extractable AES-GCM key, else an error (never a silent new key). */
function asVaultKey(stored: unknown, dbName: string, name: string): CryptoKey | undefined {
  if (stored === undefined) return undefined;
  if (!(stored instanceof CryptoKey) || stored.algorithm.name !== "AES-GCM") {
    throw new KeyVaultError(`IndexedDB ${dbName}/${STORE} holds something other than an AES-GCM key under "${name}"`);
  }
  if (stored.extractable) {
    throw new KeyVaultError(`the vault key ${dbName}/${STORE}/"${name}" is extractable; refusing to use it`);
  }
  return stored;
}

/**
 * A vault whose wrapping key is a non-extractable WebCrypto AES-GCM key
 * stored (as a CryptoKey object, structured-cloned) in IndexedDB: scripts,
 * ours included, can use it but never export its raw bytes. A wrapped secret
 * is IV (12 bytes) ‖ AES-256-GCM ciphertext ‖ tag (16 bytes).
 *
 * Tested in a real Chromium (key-vault.browser.test.ts); fake-indexeddb would
 * not exercise the engine's key store.
 */
export class IndexedDbKeyVault implements KeyVault {
  private readonly key: CryptoKey;

  private constructor(key: CryptoKey) {
    this.key = key;
  }

  /** Opens (creating on first use) the vault key named `name` in database `dbName`. */
  static async open(dbName: string, name: string): Promise<IndexedDbKeyVault> {
    const open = indexedDB.open(dbName, DB_VERSION);
    open.onupgradeneeded = () => {
      open.result.createObjectStore(STORE);
    };
    const db = await request(open);
    try {
      const read = async (): Promise<CryptoKey | undefined> =>
        asVaultKey(await request(db.transaction(STORE, "readonly").objectStore(STORE).get(name)), dbName, name);
      const stored = await read();
      if (stored !== undefined) return new IndexedDbKeyVault(stored);
      const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
      // Strict durability: the key is on disk before anything is wrapped under it.
      const tx = db.transaction(STORE, "readwrite", { durability: "strict" });
      // add(), not put(): two tabs racing to create the key cannot overwrite each other's;
      // the loser's add fails with ConstraintError and it uses the winner's key.
      const added = request(tx.objectStore(STORE).add(key, name));
      try {
        await Promise.all([added, committed(tx)]);
      } catch (err) {
        if (!(err instanceof DOMException && err.name === "ConstraintError")) {
          throw new KeyVaultError(`could not store the vault key ${dbName}/${STORE}/"${name}"`, { cause: err });
        }
      }
      const winner = await read();
      if (winner === undefined) throw new KeyVaultError("IndexedDB did not keep the vault key");
      return new IndexedDbKeyVault(winner);
    } finally {
      db.close();
    }
  }

  async wrap(secret: Uint8Array): Promise<Uint8Array> {
    const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const sealed = new Uint8Array(
      await crypto.subtle.encrypt({ name: "AES-GCM", iv }, this.key, new Uint8Array(secret)),
    );
    const out = new Uint8Array(IV_BYTES + sealed.length);
    out.set(iv);
    out.set(sealed, IV_BYTES);
    return out;
  }

  async unwrap(wrapped: Uint8Array): Promise<Uint8Array> {
    if (wrapped.length < IV_BYTES + TAG_BYTES) {
      throw new KeyVaultError(
        `wrapped secret is ${wrapped.length} bytes, shorter than IV and tag (${IV_BYTES + TAG_BYTES}): not made by a vault`,
      );
    }
    const iv = wrapped.slice(0, IV_BYTES);
    const body = wrapped.slice(IV_BYTES);
    try {
      return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv }, this.key, body));
    } catch (err) {
      // WebCrypto says only "OperationError"; the one cause for AES-GCM is a failed tag check.
      throw new KeyVaultError("wrapped secret was changed or was not made by this vault's key", { cause: err });
    }
  }
}
