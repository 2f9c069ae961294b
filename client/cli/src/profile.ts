/**
 * The profile directory of the Node client: who this device is and what it
 * keeps.
 *
 *   DIR/identity.key   the device's Ed25519 seed (JSON, mode 0600)
 *   DIR/client.sqlite  the ClientStore: profile, outbox, received messages
 *
 * The identity key is stored in plaintext, readable only by the owner; the
 * passphrase- or keychain-wrapped vault of DESIGN §5 replaces this file later
 * (its `format` field says which one a file is). The key is written before the
 * device registers, so a crash mid-init never loses a key the server knows.
 */
import { randomBytes as nodeRandomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import {
  type DeviceProfile,
  type DeviceSigner,
  ED25519_SEED_BYTES,
  selectEd25519Provider,
} from "../../core/src/index.ts";
import { usageError } from "./cli-error.ts";
import { SqliteClientStore } from "./sqlite-client-store.ts";

export const IDENTITY_FILE = "identity.key";
export const DATABASE_FILE = "client.sqlite";
const KEY_FORMAT = "remessenger-ed25519-seed-v1";

interface KeyFile {
  format: string;
  seed: string;
}

export function ensureProfileDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** The stored seed, or undefined when the profile has no key yet. */
export function readIdentitySeed(dir: string): Uint8Array | undefined {
  const path = join(dir, IDENTITY_FILE);
  if (!existsSync(path)) return undefined;
  let parsed: Partial<KeyFile>;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8")) as Partial<KeyFile>;
  } catch (cause) {
    throw usageError(
      `${path} is not a Re:Messenger identity key (${cause instanceof Error ? cause.message : "unreadable"})`,
    );
  }
  const seed =
    parsed.format === KEY_FORMAT && typeof parsed.seed === "string" ? Buffer.from(parsed.seed, "base64") : undefined;
  if (seed?.length !== ED25519_SEED_BYTES) throw usageError(`${path} is not a Re:Messenger identity key`);
  return new Uint8Array(seed);
}

/** Writes the seed atomically (temp file, fsync, rename), readable by the owner only. */
export function writeIdentitySeed(dir: string, seed: Uint8Array): void {
  const path = join(dir, IDENTITY_FILE);
  const temp = `${path}.${nodeRandomBytes(4).toString("hex")}.tmp`;
  const body: KeyFile = { format: KEY_FORMAT, seed: Buffer.from(seed).toString("base64") };
  const fd = openSync(temp, "wx", 0o600);
  try {
    writeSync(fd, `${JSON.stringify(body)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(temp, 0o600); // the umask cannot widen it, but be explicit
  renameSync(temp, path);
}

export async function signerFromSeed(seed: Uint8Array): Promise<DeviceSigner> {
  return (await selectEd25519Provider()).signerFromSeed(seed);
}

/** A registered profile, opened. */
export interface OpenProfile {
  dir: string;
  store: SqliteClientStore;
  profile: DeviceProfile;
  signer: DeviceSigner;
}

/**
 * Opens a registered profile. `serverUrl`, when given, replaces the stored
 * server and is remembered for next time.
 */
export async function openProfile(dir: string, serverUrl: string | undefined): Promise<OpenProfile> {
  const database = join(dir, DATABASE_FILE);
  const seed = readIdentitySeed(dir);
  if (!existsSync(database) || seed === undefined) {
    throw usageError(`no profile in ${dir}; create one with: remessenger --profile ${dir} init --name NAME`);
  }
  const store = SqliteClientStore.open(database);
  try {
    let profile = await store.getProfile();
    if (profile === undefined) {
      throw usageError(
        `the profile in ${dir} was never registered; run: remessenger --profile ${dir} init --name NAME`,
      );
    }
    if (serverUrl !== undefined && serverUrl !== profile.serverUrl) {
      profile = { ...profile, serverUrl };
      await store.saveProfile(profile);
    }
    return { dir, store, profile, signer: await signerFromSeed(seed) };
  } catch (error) {
    await store.close();
    throw error;
  }
}
