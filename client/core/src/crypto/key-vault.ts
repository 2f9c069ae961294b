/**
 * KeyVault: how a client keeps its secret keys at rest (DESIGN §5). The
 * device's keys (Ed25519 seed, X25519 identity key, the storage key that
 * encrypts sessions and prekeys in the ClientStore) are serialized by the
 * caller and wrapped here; nothing wrapped is ever stored in the clear.
 *
 * Implementations: IndexedDbKeyVault below (browser and app WebViews: a
 * non-extractable AES-256-GCM WebCrypto key kept in IndexedDB, which script
 * can use but never read out), and the Node CLI's key file
 * (client/cli/src/key-file.ts: a key from the OS keychain, else scrypt of a
 * passphrase).
 */

export interface KeyVault {
  /** Encrypts `secret` for rest. */
  wrap(secret: Uint8Array): Promise<Uint8Array>;
  /** The secret; rejects when `wrapped` was not made by this vault or was changed. */
  unwrap(wrapped: Uint8Array): Promise<Uint8Array>;
}

const DB_VERSION = 1;
const STORE = "keys";
const IV_BYTES = 12;

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => {
      resolve(req.result);
    };
    req.onerror = () => {
      reject(req.error ?? new Error("IndexedDB request failed"));
    };
  });
}

/**
 * A vault whose wrapping key is a non-extractable WebCrypto AES-GCM key
 * stored (as a CryptoKey object, structured-cloned) in IndexedDB: scripts,
 * ours included, can use it but never export its raw bytes.
 *
 * Its real-browser test waits for the app (no browser runs in this repo's
 * test suite yet); fake-indexeddb would not exercise the engine's key store.
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
      const stored = (await request(db.transaction(STORE, "readonly").objectStore(STORE).get(name))) as unknown;
      if (stored instanceof CryptoKey) return new IndexedDbKeyVault(stored);
      const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
      const tx = db.transaction(STORE, "readwrite");
      // add(), not put(): two tabs racing to create the key cannot overwrite each other's.
      await request(tx.objectStore(STORE).add(key, name)).catch(() => undefined);
      const winner = (await request(db.transaction(STORE, "readonly").objectStore(STORE).get(name))) as unknown;
      if (!(winner instanceof CryptoKey)) throw new Error("IndexedDB did not keep the vault key");
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
    const iv = wrapped.slice(0, IV_BYTES);
    const body = wrapped.slice(IV_BYTES);
    return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv }, this.key, body));
  }
}
