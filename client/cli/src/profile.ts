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
 * No private key is ever on disk in the clear. Opening and making the profile
 * is the core's (openProfile/createProfile: the key file is written before the
 * device registers, so a crash mid-init never loses a key the server knows);
 * this file supplies what only Node has: the SQLite path, the key file with
 * its passphrase or keychain, node:crypto providers and Node DNS exchanges,
 * and turns the core's refusals into the CLI's usage errors.
 */
import { appendFileSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { hex } from "@scure/base";
import {
  type CryptoProviders,
  type DeviceProfile,
  type DeviceSecrets,
  type DeviceSecretsKeeper,
  type E2eKeyMaterial,
  type EndpointOverrides,
  type Logger,
  type Messenger,
  type MessengerSessionOptions,
  type MessengerSettings,
  NoProfileError,
  type ProfileAccessOptions,
  ProfileSecretsError,
  openProfile as openCoreProfile,
  silentLogger,
} from "@remessenger/client-core";
import type { CliConfig } from "./cli-config.ts";
import { CliError, usageError } from "./cli-error.ts";
import {
  type KekSource,
  KeyFileError,
  hasKeyFile,
  isKeychainUsable,
  nodeEd25519,
  nodeMlKem,
  nodeX25519,
  readKeyFile,
  SqliteClientStore,
  writeKeyFile,
} from "@remessenger/client-core/node";
import { nodeExchanges } from "./transport/cli-transports.ts";

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

/**
 * The profile's key file as the core's keeper of the device secrets. What it
 * read or wrote once is remembered, so one command asks for the passphrase
 * at most once.
 */
export function keyFileKeeper(dir: string): DeviceSecretsKeeper {
  let known: DeviceSecrets | undefined;
  return {
    has: () => Promise.resolve(known !== undefined || hasKeyFile(dir)),
    async read() {
      if (known === undefined && hasKeyFile(dir)) known = await readKeyFile(dir, passphraseSource(false));
      return known;
    },
    async write(secrets) {
      await writeKeyFile(dir, secrets, newKekSource());
      known = secrets;
    },
  };
}

/** Node's native curves and ML-KEM (node:crypto): several times faster than WebCrypto or pure JS. */
export const NODE_PROVIDERS: CryptoProviders = { ed25519: nodeEd25519, x25519: nodeX25519, mlKem: nodeMlKem };

/** Endpoints named on the command line (or in the environment): they replace the profile's, which remembers them. */
export function endpointOverrides(
  config: Pick<CliConfig, "explicitServerUrl" | "dohUrls" | "resolver">,
): EndpointOverrides {
  return { serverUrl: config.explicitServerUrl, dohUrls: config.dohUrls, resolver: config.resolver };
}

/** What the core needs to open or make the profile in `store`: the Node parts. */
export function profileAccess(
  config: Pick<CliConfig, "profileDir" | "transport" | "nameBudget">,
  store: SqliteClientStore,
  logger: Logger,
): ProfileAccessOptions {
  return {
    store,
    secrets: keyFileKeeper(config.profileDir),
    providers: NODE_PROVIDERS,
    transport: config.transport,
    exchanges: (endpoints) => nodeExchanges(endpoints.resolver),
    ...(config.nameBudget === undefined ? {} : { nameBudget: config.nameBudget }),
    logger,
  };
}

/** How this CLI's messengers run, from the config. */
export function messengerSettings(
  config: Pick<CliConfig, "groupWindow" | "signedPreKeys">,
  session: MessengerSessionOptions,
  requestTimeoutMs: number,
): MessengerSettings {
  const onKeyMade = keyLog();
  return {
    session,
    requestTimeoutMs,
    groupWindow: config.groupWindow,
    signedPreKeys: config.signedPreKeys,
    ...(onKeyMade === undefined ? {} : { onKeyMade }),
  };
}

/** The core's refusal to use the profile's keys, as the user sees it: the key file's own words when it spoke. */
export function keyProblem(error: unknown, dir: string): unknown {
  if (!(error instanceof ProfileSecretsError)) return error;
  if (error.cause instanceof KeyFileError || error.cause instanceof CliError) return error.cause;
  if (error.problem === "missing") return usageError(`no key file in ${dir}`);
  return usageError(error.message);
}

/** A registered profile, opened: its store (the caller closes it) and its messenger, built but not started. */
export interface OpenProfile {
  dir: string;
  store: SqliteClientStore;
  profile: DeviceProfile;
  messenger: Messenger;
}

/**
 * Opens the registered profile in `dir`. Endpoints the command line names
 * replace the stored ones and are remembered for next time.
 */
export async function openProfile(
  dir: string,
  config: CliConfig,
  options: { logger?: Logger; session?: MessengerSessionOptions; requestTimeoutMs?: number } = {},
): Promise<OpenProfile> {
  const database = join(dir, DATABASE_FILE);
  if (!existsSync(database) || !hasKeyFile(dir)) {
    throw usageError(`no profile in ${dir}; create one with: remessenger --profile ${dir} init --name NAME`);
  }
  const store = SqliteClientStore.open(database);
  try {
    const messenger = await openCoreProfile({
      ...profileAccess({ ...config, profileDir: dir }, store, options.logger ?? silentLogger),
      endpoints: endpointOverrides(config),
      messenger: messengerSettings(config, options.session ?? {}, options.requestTimeoutMs ?? 10_000),
    });
    return { dir, store, profile: messenger.profile, messenger };
  } catch (error) {
    await store.close();
    if (error instanceof NoProfileError) {
      throw usageError(
        `the profile in ${dir} was never registered; run: remessenger --profile ${dir} init --name NAME`,
      );
    }
    throw keyProblem(error, dir);
  }
}

/** With REMESSENGER_KEY_LOG set, every key pair made is appended there (tests only). */
function keyLog(): E2eKeyMaterial["onKeyMade"] {
  const logFile = vault.keyLogFile;
  if (logFile === undefined) return undefined;
  return (kind, pair) => {
    appendFileSync(logFile, `${kind} ${hex.encode(pair.publicKey)} ${hex.encode(pair.privateKey)}\n`, {
      mode: 0o600,
    });
  };
}
