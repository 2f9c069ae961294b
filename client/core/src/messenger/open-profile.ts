/**
 * Opening a profile, and making one: the one way every client (the Node CLI,
 * the browser app) gets from its stores to a Messenger. The platform hands in
 * what only it has: the ClientStore (SQLite, IndexedDB, memory), where the
 * device secrets rest (a DeviceSecretsKeeper: the key file, or a KeyVault
 * with `storedDeviceSecrets`), its DNS exchanges and, optionally, faster
 * crypto providers; everything else is decided here.
 *
 * Making a profile writes in this order: the secrets, then (after the server
 * registered or linked the device) the profile, which names the device's
 * identity key. A crash can therefore leave secrets without a profile (the
 * "half-made" profile) but never a profile without its secrets. A half-made
 * profile is detected on open (NoProfileError with `hasUnfinishedSecrets`) and
 * cleaned up by the next `createProfile`, which reuses those secrets instead
 * of making new ones: the server either never heard of that key, or made a
 * device for it that this client never learned the id of and that simply
 * stays unused. A link request relies on this: its secrets are made (and its
 * code shown) before the approval exists.
 *
 * Invariants: open never starts the Messenger; a profile opens only with the
 * secrets of the device it names (ProfileSecretsError "mismatch" otherwise).
 */
import { base64urlnopad } from "@scure/base";
import { ErrorCode, RemessengerError, selectX25519Provider, type X25519Provider } from "@remessenger/protocol";
import { type TransportChoice, type TransportExchanges, createTransports } from "../connection/create-transports.ts";
import type { TransportFactory } from "../connection/transport.ts";
import { type DeviceSecrets, generateDeviceSecrets } from "../crypto/device-secrets.ts";
import type { DeviceSigner, Ed25519Provider } from "../crypto/device-signer.ts";
import type { MlKemProvider } from "../crypto/ml-kem.ts";
import { selectEd25519Provider } from "../crypto/select-ed25519-provider.ts";
import { type DeviceIdentity, makeDeviceIdentity } from "../e2e/session-setup.ts";
import type { GraceWindow } from "../group/epoch-window.ts";
import type { SignedPreKeyPolicy } from "../e2e/prekey-upkeep.ts";
import { type Clock, systemClock } from "../runtime/clock.ts";
import { type Logger, silentLogger } from "../runtime/logger.ts";
import { type LinkApproval, linkNewDevice, registerNewDevice } from "../session/device-auth.ts";
import type { E2eKeyMaterial } from "../session/session-options.ts";
import type { SessionTiming } from "../session/session-timing.ts";
import type { ClientStore, DeviceProfile } from "../store/client-store.ts";
import { clientSessionFactory } from "./client-session-adapter.ts";
import { Messenger } from "./messenger.ts";
import type { MessengerSessionOptions } from "./messenger-session.ts";
import {
  type EndpointOverrides,
  type ProfileEndpoints,
  transportEndpointsOf,
  tunnelFromHello,
  withEndpointOverrides,
} from "./profile-endpoints.ts";
import type { DeviceSecretsKeeper } from "./secrets-keeper.ts";

/** The store holds no (finished) profile. */
export class NoProfileError extends RemessengerError {
  override readonly name = "NoProfileError";
  /** Secrets are kept but no profile: a creation stopped half-way; `createProfile` reuses them. */
  readonly hasUnfinishedSecrets: boolean;
  constructor(hasUnfinishedSecrets: boolean) {
    super(
      ErrorCode.ERROR_CODE_NOT_FOUND,
      hasUnfinishedSecrets
        ? "this profile was never finished (its keys exist, its registration does not); create it again"
        : "there is no profile here; create one",
    );
    this.hasUnfinishedSecrets = hasUnfinishedSecrets;
  }
}

/** The store holds a profile already; `createProfile` refuses to replace it. */
export class ProfileExistsError extends RemessengerError {
  override readonly name = "ProfileExistsError";
  readonly profile: DeviceProfile;
  constructor(profile: DeviceProfile) {
    super(
      ErrorCode.ERROR_CODE_ALREADY_EXISTS,
      `a profile exists already: user ${profile.userId}, device ${profile.deviceId}`,
    );
    this.profile = profile;
  }
}

/** Why a profile's secrets cannot be used: none kept, kept but not opening, or another device's. */
export type ProfileSecretsProblem = "missing" | "unreadable" | "mismatch";

/** The profile is there but its secrets are not usable; `problem` says how, `cause` holds the keeper's error. */
export class ProfileSecretsError extends RemessengerError {
  override readonly name = "ProfileSecretsError";
  readonly problem: ProfileSecretsProblem;
  constructor(problem: ProfileSecretsProblem, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_UNAUTHENTICATED, message, options);
    this.problem = problem;
  }
}

/** Crypto implementations; each one omitted is selected for the platform (WebCrypto where it works). */
export interface CryptoProviders {
  ed25519?: Ed25519Provider;
  x25519?: X25519Provider;
  mlKem?: MlKemProvider;
}

/** What opening and making a profile share. */
export interface ProfileAccessOptions {
  store: ClientStore;
  /** Where the device secrets rest: the key file, or `storedDeviceSecrets(store, vault)`. */
  secrets: DeviceSecretsKeeper;
  providers?: CryptoProviders;
  /** The pipe (default "auto", the ladder over every transport the endpoints allow). */
  transport?: TransportChoice;
  /** The platform's DNS exchanges for a profile's endpoints (its resolver); none when omitted (DoH by fetch). */
  exchanges?: (endpoints: ProfileEndpoints) => TransportExchanges;
  /** The longest DNS query name the tunnel starts with. */
  nameBudget?: number;
  logger?: Logger;
  clock?: Clock;
}

/** How the returned Messenger and its sessions run. */
export interface MessengerSettings {
  /** What each session does (receive, send the outbox); both on when omitted. */
  session?: MessengerSessionOptions;
  requestTimeoutMs?: number;
  pageSize?: number;
  groupWindow?: GraceWindow;
  signedPreKeys?: Partial<SignedPreKeyPolicy>;
  timing?: Partial<SessionTiming>;
  /** Test hook: every ratchet and prekey pair made (like SSLKEYLOGFILE). */
  onKeyMade?: E2eKeyMaterial["onKeyMade"];
}

export interface OpenProfileOptions extends ProfileAccessOptions {
  /** Endpoints named now: they replace the profile's, which remembers them. */
  endpoints?: EndpointOverrides;
  messenger?: MessengerSettings;
}

/** How a new device joins: as a new user, or as another device of a user that approved it. */
export type ProfileJoin = { kind: "register" } | { kind: "link"; approval: LinkApproval };

export interface CreateProfileOptions extends ProfileAccessOptions {
  /** Where the server is; a `tunnel` given here (from an invite, out of band) wins over the hello's. */
  endpoints: ProfileEndpoints;
  displayName: string;
  join: ProfileJoin;
  /** One deadline for connecting and registering or linking. */
  timeoutMs: number;
  signal?: AbortSignal;
  messenger?: MessengerSettings;
}

/** The device's signer and E2E key material, made from its secrets. */
export interface DeviceKeys {
  identity: DeviceIdentity;
  signer: DeviceSigner;
  e2e: E2eKeyMaterial;
}

/** The secrets kept, else fresh ones, written before this resolves (a link request shows their code next). */
export async function ensureDeviceSecrets(
  keeper: DeviceSecretsKeeper,
  providers: CryptoProviders = {},
): Promise<DeviceSecrets> {
  const kept = await readSecrets(keeper);
  if (kept !== undefined) return kept;
  const [ed25519, x25519] = await Promise.all([ed25519Of(providers), x25519Of(providers)]);
  const secrets = await generateDeviceSecrets({ ed25519, x25519 });
  await keeper.write(secrets);
  return secrets;
}

/** The signer and E2E key material of `secrets`. */
export async function deviceKeysOf(
  secrets: DeviceSecrets,
  providers: CryptoProviders = {},
  onKeyMade?: E2eKeyMaterial["onKeyMade"],
): Promise<DeviceKeys> {
  const [ed25519, x25519] = await Promise.all([ed25519Of(providers), x25519Of(providers)]);
  const signer = await ed25519.signerFromSeed(secrets.ed25519Seed);
  const dh = { privateKey: secrets.x25519PrivateKey, publicKey: await x25519.publicKey(secrets.x25519PrivateKey) };
  const identity = await makeDeviceIdentity(signer, dh);
  const e2e: E2eKeyMaterial = {
    identity,
    storageKey: secrets.storageKey,
    ed25519,
    x25519,
    ...(providers.mlKem === undefined ? {} : { mlKem: providers.mlKem }),
    ...(onKeyMade === undefined ? {} : { onKeyMade }),
  };
  return { identity, signer, e2e };
}

/** How a profile names its device's identity key. */
export function identityKeyText(publicKey: Uint8Array): string {
  return base64urlnopad.encode(publicKey);
}

/**
 * Opens the profile in `options.store`: reads it, opens its secrets, checks
 * they are its device's, remembers endpoint overrides, and returns a Messenger
 * that is built but not started. The store stays the caller's to close.
 */
export async function openProfile(options: OpenProfileOptions): Promise<Messenger> {
  const { store } = options;
  let profile = await store.getProfile();
  if (profile === undefined) throw new NoProfileError(await options.secrets.has());
  const secrets = await readSecrets(options.secrets);
  if (secrets === undefined) {
    throw new ProfileSecretsError("missing", `the keys of device ${profile.deviceId} are gone from this profile`);
  }
  const keys = await deviceKeysOf(secrets, options.providers, options.messenger?.onKeyMade);
  const identityKey = identityKeyText(keys.signer.publicKey);
  if (profile.identityKey !== undefined && profile.identityKey !== identityKey) {
    throw new ProfileSecretsError(
      "mismatch",
      `the keys kept here are not those of device ${profile.deviceId} (another device's keys were put in its place)`,
    );
  }
  let next = withEndpointOverrides(profile, options.endpoints ?? {});
  // Profiles saved before the key was kept learn it now, from the secrets that open them.
  if (next.identityKey === undefined) next = { ...next, identityKey };
  if (next !== profile) {
    await store.saveProfile(next);
    profile = next;
  }
  return messengerFor(options, profile, keys);
}

/**
 * Makes the profile: keeps the device's secrets (reusing those of a creation
 * or link request that stopped before its profile was saved), registers the
 * device as a new user or links it with an approval, saves the profile, and
 * returns its Messenger, built but not started (start it to publish prekeys).
 * Registration errors (unreachable, deadline, refused) come out as they are.
 */
export async function createProfile(options: CreateProfileOptions): Promise<Messenger> {
  const { store } = options;
  const existing = await store.getProfile();
  if (existing !== undefined) throw new ProfileExistsError(existing);
  const secrets = await ensureDeviceSecrets(options.secrets, options.providers);
  const keys = await deviceKeysOf(secrets, options.providers, options.messenger?.onKeyMade);
  const transports = transportsFor(options, options.endpoints);
  const auth = {
    transports,
    signer: keys.signer,
    timeoutMs: options.timeoutMs,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  };
  const joined =
    options.join.kind === "register"
      ? await registerNewDevice({ ...auth, displayName: options.displayName })
      : await linkNewDevice({ ...auth, approval: options.join.approval });
  // A tunnel given with the endpoints came out of band (an invite): it wins over what a hello says.
  const tunnel = options.endpoints.tunnel ?? tunnelFromHello(joined.tunnel);
  const { serverUrl, dohUrls, resolver } = options.endpoints;
  const profile: DeviceProfile = {
    serverUrl,
    ...(dohUrls === undefined ? {} : { dohUrls }),
    ...(resolver === undefined ? {} : { resolver }),
    userId: joined.userId,
    deviceId: joined.deviceId,
    displayName: options.displayName,
    registeredAtMs: joined.serverTimeMs,
    identityKey: identityKeyText(keys.signer.publicKey),
    ...(tunnel === undefined ? {} : { tunnel }),
  };
  await store.saveProfile(profile);
  return messengerFor(options, profile, keys);
}

function messengerFor(
  options: ProfileAccessOptions & { messenger?: MessengerSettings },
  profile: DeviceProfile,
  keys: DeviceKeys,
): Messenger {
  const settings = options.messenger ?? {};
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  return new Messenger({
    store: options.store,
    profile,
    signer: keys.signer,
    sessions: clientSessionFactory({
      profile,
      signer: keys.signer,
      store: options.store,
      e2e: keys.e2e,
      logger,
      clock,
      // Built per session: a stopped session disposes its transports.
      transports: () => transportsFor(options, profile),
      ...(settings.groupWindow === undefined ? {} : { groupWindow: settings.groupWindow }),
      ...(settings.signedPreKeys === undefined ? {} : { signedPreKeys: settings.signedPreKeys }),
      ...(settings.timing === undefined ? {} : { timing: settings.timing }),
    }),
    ...(settings.session === undefined ? {} : { session: settings.session }),
    ...(settings.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: settings.requestTimeoutMs }),
    ...(settings.pageSize === undefined ? {} : { pageSize: settings.pageSize }),
    logger,
    clock,
  });
}

function transportsFor(options: ProfileAccessOptions, endpoints: ProfileEndpoints): TransportFactory {
  return createTransports({
    endpoints: transportEndpointsOf(endpoints),
    transport: options.transport ?? "auto",
    exchanges: options.exchanges?.(endpoints) ?? {},
    logger: options.logger ?? silentLogger,
    clock: options.clock ?? systemClock,
    ...(options.nameBudget === undefined ? {} : { nameBudget: options.nameBudget }),
  });
}

/** The keeper's secrets; any failure to open them is a ProfileSecretsError "unreadable" with the keeper's error as cause. */
async function readSecrets(keeper: DeviceSecretsKeeper): Promise<DeviceSecrets | undefined> {
  try {
    return await keeper.read();
  } catch (cause) {
    const why = cause instanceof Error ? cause.message : String(cause);
    throw new ProfileSecretsError("unreadable", `this profile's keys do not open: ${why}`, { cause });
  }
}

function ed25519Of(providers: CryptoProviders): Promise<Ed25519Provider> {
  return providers.ed25519 === undefined ? selectEd25519Provider() : Promise.resolve(providers.ed25519);
}

function x25519Of(providers: CryptoProviders): Promise<X25519Provider> {
  return providers.x25519 === undefined ? selectX25519Provider() : Promise.resolve(providers.x25519);
}
