/**
 * The Node client's key vault: DIR/identity.key holds the device's secret keys
 * (crypto/device-secrets.ts: Ed25519 seed, X25519 identity key, the storage
 * key of the E2E state, in that format's bytes) encrypted with
 * XChaCha20-Poly1305 under a key-encryption key that is
 *
 *   - a random key kept in the OS keychain, when one is usable (libsecret's
 *     `secret-tool` on Linux with a Secret Service running); or
 *   - scrypt (N=2^15, r=8, p=1) of a passphrase, from REMESSENGER_PASSPHRASE or
 *     asked on the terminal.
 *
 * The file says which (`kek`), so a profile made with one opens only with it.
 * It is written atomically (temp file, fsync, rename) with mode 0600. The
 * plaintext keys exist only in memory. What the user can fix (no key in the
 * keychain, a wrong or empty passphrase, not a key file) is a KeyFileError.
 */
import { execFileSync } from "node:child_process";
import { randomBytes, scryptSync } from "node:crypto";
import { chmodSync, closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { aeadOpen, aeadSeal, ErrorCode, RemessengerError } from "@remessenger/protocol";
import { type DeviceSecrets, decodeDeviceSecrets, encodeDeviceSecrets } from "../index.ts";

export const IDENTITY_FILE = "identity.key";
const FORMAT = "remessenger-keys-v2";
const SCRYPT = { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const KEYCHAIN_SERVICE = "remessenger";

/** A key file the user can do something about: missing key, wrong passphrase, not a key file. */
export class KeyFileError extends RemessengerError {
  override readonly name = "KeyFileError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_UNAUTHENTICATED, message, options);
  }
}

/** Where the key-encryption key comes from. */
export type KekSource = { kind: "keychain" } | { kind: "passphrase"; passphrase: () => Promise<string> };

interface KeyFileJson {
  format: string;
  kek: "keychain" | "scrypt";
  salt: string;
  nonce: string;
  box: string;
}

/** Whether a Secret Service keychain can be used here (secret-tool installed and answering). */
export function isKeychainUsable(): boolean {
  try {
    execFileSync("secret-tool", ["search", "service", KEYCHAIN_SERVICE], { stdio: "ignore", timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

function keychainKey(dir: string, create: boolean): Uint8Array {
  const profile = resolve(dir);
  try {
    const found = execFileSync("secret-tool", ["lookup", "service", KEYCHAIN_SERVICE, "profile", profile], {
      encoding: "utf8",
      timeout: 10_000,
    }).trim();
    if (found.length > 0) return new Uint8Array(Buffer.from(found, "base64"));
  } catch {
    // not found: create below when allowed
  }
  if (!create) throw new KeyFileError(`the keychain has no key for the profile ${profile}`);
  const key = randomBytes(32);
  execFileSync(
    "secret-tool",
    ["store", "--label", `Re:Messenger ${profile}`, "service", KEYCHAIN_SERVICE, "profile", profile],
    {
      input: key.toString("base64"),
      timeout: 10_000,
    },
  );
  return new Uint8Array(key);
}

export function hasKeyFile(dir: string): boolean {
  return existsSync(join(dir, IDENTITY_FILE));
}

/** Encrypts and writes the secrets, atomically, owner-only. */
export async function writeKeyFile(dir: string, secrets: DeviceSecrets, source: KekSource): Promise<void> {
  const salt = randomBytes(16);
  const kek =
    source.kind === "keychain"
      ? keychainKey(dir, true)
      : new Uint8Array(scryptSync(await nonEmptyPassphrase(source), salt, 32, SCRYPT));
  const nonce = randomBytes(24);
  const plain = encodeDeviceSecrets(secrets);
  const box = aeadSeal(kek, nonce, plain, new TextEncoder().encode(FORMAT));
  kek.fill(0);
  plain.fill(0);
  const body: KeyFileJson = {
    format: FORMAT,
    kek: source.kind === "keychain" ? "keychain" : "scrypt",
    salt: salt.toString("base64"),
    nonce: nonce.toString("base64"),
    box: Buffer.from(box).toString("base64"),
  };
  const path = join(dir, IDENTITY_FILE);
  const temp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  const fd = openSync(temp, "wx", 0o600);
  try {
    writeSync(fd, `${JSON.stringify(body)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(temp, 0o600);
  renameSync(temp, path);
}

/** Reads and decrypts the secrets; a wrong passphrase is a clear usage error. */
export async function readKeyFile(dir: string, source: KekSource): Promise<DeviceSecrets> {
  const path = join(dir, IDENTITY_FILE);
  let parsed: Partial<KeyFileJson>;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8")) as Partial<KeyFileJson>;
  } catch (cause) {
    throw new KeyFileError(
      `${path} is not a Re:Messenger key file (${cause instanceof Error ? cause.message : "unreadable"})`,
    );
  }
  if (
    parsed.format !== FORMAT ||
    typeof parsed.salt !== "string" ||
    typeof parsed.nonce !== "string" ||
    typeof parsed.box !== "string"
  ) {
    throw new KeyFileError(`${path} is not a Re:Messenger key file of format ${FORMAT}`);
  }
  const salt = Buffer.from(parsed.salt, "base64");
  let kek: Uint8Array;
  if (parsed.kek === "keychain") {
    kek = keychainKey(dir, false);
  } else {
    if (source.kind !== "passphrase") throw new KeyFileError(`${path} is protected by a passphrase`);
    kek = new Uint8Array(scryptSync(await nonEmptyPassphrase(source), salt, 32, SCRYPT));
  }
  const opened = aeadOpen(
    kek,
    new Uint8Array(Buffer.from(parsed.nonce, "base64")),
    new Uint8Array(Buffer.from(parsed.box, "base64")),
    new TextEncoder().encode(FORMAT),
  );
  kek.fill(0);
  if (opened === undefined) {
    throw new KeyFileError(
      parsed.kek === "keychain"
        ? `the keychain's key does not open ${path}`
        : `wrong passphrase for ${path} (set REMESSENGER_PASSPHRASE or type it when asked)`,
    );
  }
  try {
    return decodeDeviceSecrets(opened);
  } finally {
    opened.fill(0);
  }
}

async function nonEmptyPassphrase(source: { passphrase: () => Promise<string> }): Promise<string> {
  const value = await source.passphrase();
  if (value.length === 0) throw new KeyFileError("the passphrase is empty");
  return value;
}
