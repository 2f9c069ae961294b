// IndexedDbKeyVault in a real Chromium (vitest browser mode, see vitest.config.ts): the
// engine's own IndexedDB and WebCrypto key store, no fake-indexeddb.
import { afterEach, describe, expect, test } from "vitest";
import { request } from "../runtime/indexeddb-request.ts";
import { IndexedDbKeyVault, KeyVaultError } from "./key-vault.ts";

type VaultModule = typeof import("./key-vault.ts");

const createdDbs = new Set<string>();

/** A database name of its own for each use, deleted after the test. */
function freshDbName(label: string): string {
  const name = `key-vault-test-${label}-${crypto.randomUUID()}`;
  createdDbs.add(name);
  return name;
}

function randomSecret(length = 32): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(length));
}

/**
 * Deletes database `name`. A "blocked" event is not a failure: a connection whose close() waits
 * for its last transaction to finish fires it, then the deletion goes on (the test's timeout
 * bounds the wait).
 */
async function deleteDb(name: string): Promise<void> {
  const req = indexedDB.deleteDatabase(name);
  await new Promise<void>((resolve, reject) => {
    req.onsuccess = () => {
      resolve();
    };
    req.onerror = () => {
      reject(req.error ?? new Error(`could not delete ${name}`));
    };
  });
}

afterEach(async () => {
  for (const name of createdDbs) await deleteDb(name);
  createdDbs.clear();
  localStorage.clear();
});

async function withDb<T>(name: string, use: (db: IDBDatabase) => Promise<T>): Promise<T> {
  const db = await request(indexedDB.open(name));
  try {
    return await use(db);
  } finally {
    db.close();
  }
}

/** The vault's record as IndexedDB hands it back (a structured clone of what was stored). */
function readVaultRecord(dbName: string, name: string): Promise<unknown> {
  return withDb(dbName, (db) => request(db.transaction("keys", "readonly").objectStore("keys").get(name)));
}

/** What an app would do with a wrapped secret: keep it in a database of its own. */
async function storeInAppDb(dbName: string, record: unknown): Promise<void> {
  const open = indexedDB.open(dbName, 1);
  open.onupgradeneeded = () => {
    open.result.createObjectStore("secrets");
  };
  const db = await request(open);
  try {
    await request(db.transaction("secrets", "readwrite").objectStore("secrets").put(record, "device"));
  } finally {
    db.close();
  }
}

/** Every key and value of every object store of every database of this origin. */
async function dumpIndexedDb(): Promise<{ where: string; value: unknown }[]> {
  const out: { where: string; value: unknown }[] = [];
  for (const info of await indexedDB.databases()) {
    const dbName = info.name;
    if (dbName === undefined) continue;
    await withDb(dbName, async (db) => {
      for (const store of Array.from(db.objectStoreNames)) {
        const objects = db.transaction(store, "readonly").objectStore(store);
        const [keys, values] = await Promise.all([request(objects.getAllKeys()), request(objects.getAll())]);
        keys.forEach((key, i) => {
          out.push({ where: `${dbName}/${store} key`, value: key });
          out.push({ where: `${dbName}/${store}/${JSON.stringify(key)}`, value: values[i] });
        });
      }
    });
  }
  return out;
}

function dumpLocalStorage(): { where: string; value: unknown }[] {
  const out: { where: string; value: unknown }[] = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i) ?? "";
    out.push({ where: `localStorage key ${i}`, value: key });
    out.push({ where: `localStorage[${key}]`, value: localStorage.getItem(key) });
  }
  return out;
}

interface Scan {
  /** Where a copy of the secret was found (raw bytes, hex, base64, decimal list, latin1). */
  hits: string[];
  /** CryptoKeys met on the way: their bytes are not readable by script, so they are reported instead. */
  keys: { where: string; key: CryptoKey }[];
}

function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function textForms(secret: Uint8Array): string[] {
  const latin1 = String.fromCharCode(...secret);
  const base64 = btoa(latin1);
  const hex = Array.from(secret, (b) => b.toString(16).padStart(2, "0")).join("");
  return [
    latin1,
    base64.replace(/=+$/, ""),
    base64.replace(/=+$/, "").replaceAll("+", "-").replaceAll("/", "_"),
    hex,
    hex.toUpperCase(),
    Array.from(secret).join(","),
  ];
}

/** Looks for `secret` in every byte and string reachable from `entries`; refuses what it cannot read. */
function scanFor(secret: Uint8Array, entries: { where: string; value: unknown }[]): Scan {
  const scan: Scan = { hits: [], keys: [] };
  const forms = textForms(secret);
  const visit = (value: unknown, where: string, depth: number): void => {
    if (depth > 32) throw new Error(`scan: ${where} nests too deep`);
    if (value === null || value === undefined) return;
    if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return;
    if (typeof value === "string") {
      if (forms.some((form) => value.includes(form))) scan.hits.push(where);
      else visit(new TextEncoder().encode(value), where, depth + 1);
      return;
    }
    if (value instanceof ArrayBuffer) {
      visit(new Uint8Array(value), where, depth + 1);
      return;
    }
    if (ArrayBuffer.isView(value)) {
      const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      if (indexOfBytes(bytes, secret) >= 0) scan.hits.push(where);
      return;
    }
    if (value instanceof CryptoKey) {
      scan.keys.push({ where, key: value });
      return;
    }
    if (value instanceof Date) return;
    if (Array.isArray(value)) {
      value.forEach((item, i) => {
        visit(item, `${where}[${i}]`, depth + 1);
      });
      return;
    }
    if (value instanceof Map) {
      for (const [k, v] of value) {
        visit(k, `${where} map key`, depth + 1);
        visit(v, `${where} map value`, depth + 1);
      }
      return;
    }
    const proto: unknown = Object.getPrototypeOf(value);
    if (typeof value === "object" && (proto === Object.prototype || proto === null)) {
      for (const [k, v] of Object.entries(value)) {
        visit(k, `${where} key`, depth + 1);
        visit(v, `${where}.${k}`, depth + 1);
      }
      return;
    }
    throw new Error(`scan: cannot read ${where} (${Object.prototype.toString.call(value)}); teach the scan`);
  };
  for (const entry of entries) visit(entry.value, entry.where, 0);
  return scan;
}

function toBase64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

/**
 * A same-origin document of its own (an iframe), with key-vault.ts loaded as a fresh module in
 * its realm: its globals, its IndexedDB connections, nothing shared with this test's realm but
 * the origin's storage. `reload()` reloads the document, as a user reloading the page would.
 */
async function openDocument(): Promise<{
  load: () => Promise<VaultModule>;
  reload: () => Promise<void>;
  window: () => Window;
  close: () => void;
}> {
  const frame = document.createElement("iframe");
  const loaded = (): Promise<void> =>
    new Promise((resolve) => {
      frame.addEventListener(
        "load",
        () => {
          resolve();
        },
        { once: true },
      );
    });
  const window = (): Window => {
    if (frame.contentWindow === null) throw new Error("the iframe has no window");
    return frame.contentWindow;
  };
  const firstLoad = loaded();
  frame.srcdoc = "<!doctype html><title>vault document</title>";
  document.body.append(frame);
  await firstLoad;
  const moduleUrl = new URL("./key-vault.ts", import.meta.url).href;
  return {
    window,
    // Indirect eval in the frame's realm: the import lands in that realm's module map.
    load: () => {
      const frameEval = Reflect.get(window(), "eval") as (code: string) => unknown;
      return frameEval(`import(${JSON.stringify(moduleUrl)})`) as Promise<VaultModule>;
    },
    reload: async () => {
      const next = loaded();
      window().location.reload();
      await next;
    },
    close: () => {
      frame.remove();
    },
  };
}

describe("IndexedDbKeyVault in Chromium", () => {
  test("runs in a real Chromium with IndexedDB and WebCrypto", () => {
    expect(navigator.userAgent).toMatch(/Chrome\/\d+/);
    expect(typeof indexedDB.open).toBe("function");
    expect(crypto.subtle).toBeDefined();
  });

  test("its wrapping key is a non-extractable AES-256-GCM CryptoKey, in memory and as stored in IndexedDB", async () => {
    const dbName = freshDbName("extract");
    const vault = await IndexedDbKeyVault.open(dbName, "device");
    const stored = await readVaultRecord(dbName, "device");
    const inMemory = Reflect.get(vault, "key") as unknown;
    for (const key of [stored, inMemory]) {
      expect(key).toBeInstanceOf(CryptoKey);
      const cryptoKey = key as CryptoKey;
      expect(cryptoKey.extractable).toBe(false);
      expect(cryptoKey.algorithm).toEqual({ name: "AES-GCM", length: 256 });
      expect([...cryptoKey.usages].sort()).toEqual(["decrypt", "encrypt"]);
      for (const format of ["raw", "jwk"] as const) {
        await expect(crypto.subtle.exportKey(format, cryptoKey)).rejects.toThrow(/not extractable/);
      }
    }
    // The stored record is the key that wraps: it opens what the vault wrapped.
    const secret = randomSecret();
    const wrapped = await vault.wrap(secret);
    const opened = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: wrapped.slice(0, 12) },
      stored as CryptoKey,
      wrapped.slice(12),
    );
    expect(new Uint8Array(opened)).toEqual(secret);
  });

  test("a secret wrapped by one vault instance unwraps in another opened on the same database and name", async () => {
    const dbName = freshDbName("reopen");
    const secret = randomSecret(96);
    const first = await IndexedDbKeyVault.open(dbName, "device");
    const wrapped = await first.wrap(secret);
    expect(wrapped.length).toBe(12 + secret.length + 16);
    expect(indexOfBytes(wrapped, secret)).toBe(-1);
    const again = await first.wrap(secret);
    expect(toBase64(again)).not.toBe(toBase64(wrapped)); // a fresh IV per wrap
    const second = await IndexedDbKeyVault.open(dbName, "device");
    expect(await second.unwrap(wrapped)).toEqual(secret);
    expect(await second.unwrap(again)).toEqual(secret);
    expect(await second.unwrap(await second.wrap(new Uint8Array(0)))).toEqual(new Uint8Array(0));
  });

  test("a secret wrapped before a page reload unwraps after it, in a fresh document and module", async () => {
    const dbName = freshDbName("reload");
    const secret = randomSecret();
    const page = await openDocument();
    try {
      const before = await page.load();
      const vault = await before.IndexedDbKeyVault.open(dbName, "device");
      const wrapped = Array.from(await vault.wrap(Array.from(secret) as unknown as Uint8Array));
      Reflect.set(page.window(), "vaultTestMarker", true);

      await page.reload();
      expect(Reflect.get(page.window(), "vaultTestMarker")).toBeUndefined(); // a new realm
      const after = await page.load();
      expect(after).not.toBe(before);
      const reopened = await after.IndexedDbKeyVault.open(dbName, "device");
      const frameBytes = Reflect.get(page.window(), "Uint8Array") as Uint8ArrayConstructor;
      expect(Array.from(await reopened.unwrap(frameBytes.from(wrapped)))).toEqual(Array.from(secret));
    } finally {
      page.close();
    }
    // And this realm, another document of the same origin, opens the same key.
    const here = await IndexedDbKeyVault.open(dbName, "device");
    expect(await here.unwrap(await here.wrap(secret))).toEqual(secret);
  });

  test("IndexedDB and localStorage hold no copy of a wrapped secret, only the non-extractable key and the wrapped bytes", async () => {
    const vaultDb = freshDbName("at-rest-vault");
    const appDb = freshDbName("at-rest-app");
    const secrets = [randomSecret(32), randomSecret(64)];
    const vault = await IndexedDbKeyVault.open(vaultDb, "device");
    const wrapped = await Promise.all(secrets.map((secret) => vault.wrap(secret)));
    // Wrapped secrets kept the way an app might: bytes in IndexedDB, base64 in localStorage.
    await storeInAppDb(appDb, { identity: wrapped[0], storageKey: wrapped[1] });
    localStorage.setItem("remessenger.wrapped", JSON.stringify(wrapped.map(toBase64)));

    const stored = [...(await dumpIndexedDb()), ...dumpLocalStorage()];
    expect(stored.map((entry) => entry.where)).toEqual(
      expect.arrayContaining([
        `${vaultDb}/keys/"device"`,
        `${appDb}/secrets/"device"`,
        "localStorage[remessenger.wrapped]",
      ]),
    );
    for (const secret of secrets) {
      const scan = scanFor(secret, stored);
      expect(scan.hits).toEqual([]);
      expect(scan.keys.map((k) => k.where)).toEqual([`${vaultDb}/keys/"device"`]);
      for (const { key } of scan.keys) {
        expect(key.extractable).toBe(false);
        await expect(crypto.subtle.exportKey("raw", key)).rejects.toThrow(/not extractable/);
      }
    }
    // What was stored still opens to the secrets.
    const reopened = await IndexedDbKeyVault.open(vaultDb, "device");
    for (const [i, secret] of secrets.entries()) expect(await reopened.unwrap(wrapped[i]!)).toEqual(secret);
  });

  test("the at-rest scan finds a planted plaintext in IndexedDB and localStorage (a clean scan means something)", async () => {
    const appDb = freshDbName("planted");
    const secret = randomSecret();
    await storeInAppDb(appDb, { nested: [{ bytes: secret.slice().buffer }] });
    const hex = Array.from(secret, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem("leak-b64", toBase64(secret));
    localStorage.setItem("leak-hex", `key=${hex}`);
    const scan = scanFor(secret, [...(await dumpIndexedDb()), ...dumpLocalStorage()]);
    expect(scan.hits.sort()).toEqual(
      [`${appDb}/secrets/"device".nested[0].bytes`, "localStorage[leak-b64]", "localStorage[leak-hex]"].sort(),
    );
  });

  test("changed, truncated or foreign wrapped data fails to unwrap with a KeyVaultError that says so", async () => {
    const vault = await IndexedDbKeyVault.open(freshDbName("tamper"), "device");
    const secret = randomSecret();
    const wrapped = await vault.wrap(secret);
    const flipped = (index: number): Uint8Array => {
      const copy = wrapped.slice();
      copy[index] = copy[index]! ^ 0x01;
      return copy;
    };
    const changed = [
      flipped(0), // IV
      flipped(12), // ciphertext
      flipped(wrapped.length - 1), // tag
      wrapped.slice(0, -1),
      Uint8Array.of(...wrapped, 0),
      await (await IndexedDbKeyVault.open(freshDbName("tamper-other"), "device")).wrap(secret),
    ];
    for (const bad of changed) {
      const failure = vault.unwrap(bad);
      await expect(failure).rejects.toBeInstanceOf(KeyVaultError);
      await expect(failure).rejects.toThrow("wrapped secret was changed or was not made by this vault's key");
    }
    for (const tooShort of [new Uint8Array(0), wrapped.slice(0, 27)]) {
      const failure = vault.unwrap(tooShort);
      await expect(failure).rejects.toBeInstanceOf(KeyVaultError);
      await expect(failure).rejects.toThrow(/shorter than IV and tag \(28\): not made by a vault/);
    }
    expect(await vault.unwrap(wrapped)).toEqual(secret); // the original still opens
  });

  test("vaults under different database names or key names have independent keys", async () => {
    const dbA = freshDbName("independent-a");
    const dbB = freshDbName("independent-b");
    const secret = randomSecret();
    const names: [string, string][] = [
      [dbA, "device"],
      [dbA, "other"],
      [dbB, "device"],
    ];
    const vaults = await Promise.all(names.map(([db, name]) => IndexedDbKeyVault.open(db, name)));
    const wrapped = await Promise.all(vaults.map((vault) => vault.wrap(secret)));
    for (const [i, vault] of vaults.entries()) {
      for (const [j, blob] of wrapped.entries()) {
        if (i === j) expect(await vault.unwrap(blob)).toEqual(secret);
        else await expect(vault.unwrap(blob)).rejects.toBeInstanceOf(KeyVaultError);
      }
    }
    // Deleting one database loses only its own key: the others still open what they wrapped,
    // and the same name in the deleted database gets a new key that opens nothing old.
    await deleteDb(dbB);
    const reopenedA = await IndexedDbKeyVault.open(dbA, "device");
    const reopenedOther = await IndexedDbKeyVault.open(dbA, "other");
    expect(await reopenedA.unwrap(wrapped[0]!)).toEqual(secret);
    expect(await reopenedOther.unwrap(wrapped[1]!)).toEqual(secret);
    const recreatedB = await IndexedDbKeyVault.open(dbB, "device");
    await expect(recreatedB.unwrap(wrapped[2]!)).rejects.toBeInstanceOf(KeyVaultError);
  });

  test("opens racing to create the same key agree on one key (the later add loses, nothing is overwritten)", async () => {
    const dbName = freshDbName("race");
    const racers = await Promise.all([1, 2, 3, 4].map(() => IndexedDbKeyVault.open(dbName, "device")));
    const secret = randomSecret();
    for (const wrapper of racers) {
      const wrapped = await wrapper.wrap(secret);
      for (const opener of racers) expect(await opener.unwrap(wrapped)).toEqual(secret);
    }
  });

  test("refuses a stored record that is not a non-extractable AES-GCM key instead of replacing it", async () => {
    const dbName = freshDbName("foreign");
    await IndexedDbKeyVault.open(dbName, "device"); // creates the database and its store
    const extractable = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt", "decrypt"]);
    await withDb(dbName, async (db) => {
      const store = db.transaction("keys", "readwrite").objectStore("keys");
      await request(store.put(extractable, "leaky"));
      await request(store.put(new Uint8Array(32), "bytes"));
    });
    await expect(IndexedDbKeyVault.open(dbName, "leaky")).rejects.toThrow(/is extractable; refusing to use it/);
    await expect(IndexedDbKeyVault.open(dbName, "bytes")).rejects.toThrow(/something other than an AES-GCM key/);
    expect(await readVaultRecord(dbName, "bytes")).toEqual(new Uint8Array(32));
  });
});
