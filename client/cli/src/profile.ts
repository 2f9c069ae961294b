/**
 * The profile directory of the Node client: who this device is and what it
 * keeps.
 *
 *   DIR/identity.key   the device's secret keys, encrypted (the core's node/key-file.ts): the
 *                      Ed25519 seed, the X25519 identity key and the storage
 *                      key of the E2E state; mode 0600
 *   DIR/client.sqlite  the ClientStore: profile, outbox, received messages,
 *                      and the E2E state (sessions, prekeys, known devices),
 *                      each record encrypted with the storage key
 *
 * No private key is ever on disk in the clear. The key file is written before
 * the device registers, so a crash mid-init never loses a key the server knows.
 */
import { appendFileSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { hex } from "@scure/base";
import {
  type DeviceIdentity,
  type DeviceProfile,
  type DeviceSecrets,
  type DeviceSigner,
  type E2eKeyMaterial,
  encodeTunnelKey,
  generateDeviceSecrets,
  makeDeviceIdentity,
} from "@remessenger/client-core";
import type { CliConfig } from "./cli-config.ts";
import { usageError } from "./cli-error.ts";
import {
  type KekSource,
  hasKeyFile,
  isKeychainUsable,
  nodeEd25519,
  nodeMlKem,
  nodeX25519,
  readKeyFile,
  SqliteClientStore,
  writeKeyFile,
} from "@remessenger/client-core/node";
import type { TunnelInfo } from "@remessenger/protocol";
import type { Endpoints } from "./transport/cli-transports.ts";

export const DATABASE_FILE = "client.sqlite";

export function ensureProfileDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

interface VaultSettings {
  passphrase: string | undefined;
  keyLogFile: string | undefined;
}

let vault: VaultSettings = { passphrase: undefined, keyLogFile: undefined };

/** Takes the passphrase and key-log settings from the parsed config (main.ts, once per command). */
export function configureKeyVault(config: Pick<CliConfig, "passphrase" | "keyLogFile">): void {
  vault = { passphrase: config.passphrase, keyLogFile: config.keyLogFile };
}

/** Asks on the terminal without echo; refuses when there is no terminal. */
function promptPassphrase(question: string): Promise<string> {
  if (!process.stdin.isTTY) {
    return Promise.reject(
      usageError(
        "the profile's keys are protected by a passphrase: set REMESSENGER_PASSPHRASE (no terminal to ask on)",
      ),
    );
  }
  let isMuted = false;
  const output = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (!isMuted) process.stderr.write(chunk);
      callback();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  return new Promise((resolve) => {
    rl.question(question, (answer) => {
      rl.close();
      process.stderr.write("\n");
      resolve(answer);
    });
    isMuted = true;
  });
}

/** The passphrase source (env first, else the terminal). */
function passphraseSource(isNew: boolean): KekSource {
  return {
    kind: "passphrase",
    passphrase: () =>
      vault.passphrase !== undefined
        ? Promise.resolve(vault.passphrase)
        : promptPassphrase(isNew ? "New passphrase for this profile's keys: " : "Passphrase: "),
  };
}

/** For a new profile: the keychain when one works here, else a passphrase. */
export function newKekSource(): KekSource {
  return vault.passphrase === undefined && isKeychainUsable() ? { kind: "keychain" } : passphraseSource(true);
}

export function newDeviceSecrets(): Promise<DeviceSecrets> {
  return generateDeviceSecrets({ ed25519: nodeEd25519, x25519: nodeX25519 });
}

/** The secrets in the profile's key file, or undefined when it has none. */
export async function readDeviceSecrets(dir: string): Promise<DeviceSecrets | undefined> {
  if (!hasKeyFile(dir)) return undefined;
  return readKeyFile(dir, passphraseSource(false));
}

export async function writeDeviceSecrets(dir: string, secrets: DeviceSecrets): Promise<void> {
  await writeKeyFile(dir, secrets, newKekSource());
}

export async function signerFromSeed(seed: Uint8Array): Promise<DeviceSigner> {
  return nodeEd25519.signerFromSeed(seed);
}

export async function identityFrom(secrets: DeviceSecrets): Promise<DeviceIdentity> {
  const signer = await signerFromSeed(secrets.ed25519Seed);
  const dh = { privateKey: secrets.x25519PrivateKey, publicKey: await nodeX25519.publicKey(secrets.x25519PrivateKey) };
  return makeDeviceIdentity(signer, dh);
}

/** A registered profile, opened. */
export interface OpenProfile {
  dir: string;
  store: SqliteClientStore;
  profile: DeviceProfile;
  signer: DeviceSigner;
  e2e: E2eKeyMaterial;
}

/**
 * Opens a registered profile. `serverUrl`, when given, replaces the stored
 * server and is remembered for next time.
 */
/** Endpoints named on the command line (or in the environment): they replace the profile's, which remembers them. */
export type EndpointOverrides = Pick<CliConfig, "explicitServerUrl" | "dohUrls" | "resolver">;

/** The profile with what the command line names instead (the same object when nothing changes). */
export function withOverrides<P extends Pick<DeviceProfile, "serverUrl" | "dohUrls" | "resolver">>(
  profile: P,
  overrides: EndpointOverrides,
): P {
  const { explicitServerUrl, dohUrls, resolver } = overrides;
  let next = profile;
  if (explicitServerUrl !== undefined && explicitServerUrl !== profile.serverUrl) {
    next = { ...next, serverUrl: explicitServerUrl };
  }
  if (dohUrls.length > 0 && dohUrls.join(" ") !== (profile.dohUrls ?? []).join(" ")) {
    next = { ...next, dohUrls: [...dohUrls] };
  }
  if (resolver !== undefined && (resolver.host !== profile.resolver?.host || resolver.port !== profile.resolver.port)) {
    next = { ...next, resolver: { ...resolver } };
  }
  return next;
}

/** The DNS tunnel a server's hello announced, as a profile keeps it; undefined when it has none. */
export function tunnelFromHello(tunnel: TunnelInfo | undefined): DeviceProfile["tunnel"] {
  return tunnel === undefined || tunnel.zone === ""
    ? undefined
    : { zone: tunnel.zone, publicKey: encodeTunnelKey(tunnel.publicKey) };
}

/** Where this profile reaches its server. */
export function endpointsOf(profile: Pick<DeviceProfile, "serverUrl" | "tunnel" | "dohUrls" | "resolver">): Endpoints {
  return {
    serverUrls: profile.serverUrl,
    tunnel: profile.tunnel,
    dohUrls: profile.dohUrls ?? [],
    resolver: profile.resolver,
  };
}

const NO_OVERRIDES: EndpointOverrides = { explicitServerUrl: undefined, dohUrls: [], resolver: undefined };

export async function openProfile(dir: string, overrides: EndpointOverrides = NO_OVERRIDES): Promise<OpenProfile> {
  const database = join(dir, DATABASE_FILE);
  if (!existsSync(database) || !hasKeyFile(dir)) {
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
    const secrets = await readDeviceSecrets(dir);
    if (secrets === undefined) throw usageError(`no key file in ${dir}`);
    const changed = withOverrides(profile, overrides);
    if (changed !== profile) {
      profile = changed;
      await store.saveProfile(profile);
    }
    const identity = await identityFrom(secrets);
    return { dir, store, profile, signer: identity.signer, e2e: keyMaterial(identity, secrets.storageKey) };
  } catch (error) {
    await store.close();
    throw error;
  }
}

/** The session's E2E keys; with REMESSENGER_KEY_LOG set, every key pair made is appended there (tests only). */
export function keyMaterial(identity: DeviceIdentity, storageKey: Uint8Array): E2eKeyMaterial {
  const logFile = vault.keyLogFile;
  // Node's native curves and ML-KEM (node:crypto): several times faster than WebCrypto or pure JS.
  const providers = { x25519: nodeX25519, ed25519: nodeEd25519, mlKem: nodeMlKem };
  if (logFile === undefined) return { identity, storageKey, ...providers };
  return {
    identity,
    storageKey,
    ...providers,
    onKeyMade: (kind, pair) => {
      appendFileSync(logFile, `${kind} ${hex.encode(pair.publicKey)} ${hex.encode(pair.privateKey)}\n`, {
        mode: 0o600,
      });
    },
  };
}
