/**
 * `remessenger init --name NAME [--invite STRING]`: creates the profile — a
 * fresh identity key, registered with the server as a new user — and prints
 * the user id. The server's DNS tunnel (zone and key) is kept in the profile:
 * from the invite when one is given (then the server can be reached over
 * `--transport doh|dns` already for registering), else from the hello.
 * The keys are on disk (encrypted, key-file.ts) before the server hears of
 * them; after registering, the device publishes its prekeys so others can
 * start end-to-end sessions with it while it is offline.
 */
import { join } from "node:path";
import {
  ErrorCode,
  isError,
  registerNewDevice,
  type Invite,
  decodeInvite,
  encodeTunnelKey,
} from "@remessenger/client-core";
import { MAX_DISPLAY_NAME_CHARS } from "@remessenger/protocol";
import { DEFAULT_SERVER_URL } from "../cli-config.ts";
import { CliError, usageError } from "../cli-error.ts";
import { type CommandContext, FIRST_ATTEMPT_TIMEOUT_MS, firstAttempt, runMessenger } from "../cli-session.ts";
import {
  DATABASE_FILE,
  endpointsOf,
  ensureProfileDir,
  identityFrom,
  keyMaterial,
  newDeviceSecrets,
  type OpenProfile,
  readDeviceSecrets,
  tunnelFromHello,
  withOverrides,
  writeDeviceSecrets,
} from "../profile.ts";
import { SqliteClientStore } from "@remessenger/client-core/node";
import { transportFactoryFor } from "../transport/cli-transports.ts";

const REGISTER_TIMEOUT_MS = 10_000;

export async function initCommand(context: CommandContext, options: { name: string; invite?: string }): Promise<void> {
  const { config, output } = context;
  const name = options.name.trim();
  // The server counts code points, as Array.from does.
  if (name.length === 0 || Array.from(name).length > MAX_DISPLAY_NAME_CHARS) {
    throw usageError(`--name must be 1 to ${MAX_DISPLAY_NAME_CHARS} characters`);
  }
  let invite: Invite | undefined;
  if (options.invite !== undefined) {
    try {
      invite = decodeInvite(options.invite);
    } catch (error) {
      throw usageError(`--invite: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const dir = config.profileDir;
  ensureProfileDir(dir);
  const store = SqliteClientStore.open(join(dir, DATABASE_FILE));
  try {
    const existing = await store.getProfile();
    if (existing !== undefined) {
      throw usageError(`${dir} is initialized already: user ${existing.userId}, device ${existing.deviceId}`);
    }
    // Keys left by an init that crashed before registering are reused, not replaced.
    let secrets = await readDeviceSecrets(dir);
    if (secrets === undefined) {
      secrets = await newDeviceSecrets();
      await writeDeviceSecrets(dir, secrets);
    }
    const identity = await identityFrom(secrets);
    const serverUrl = config.explicitServerUrl ?? invite?.serverUrl ?? DEFAULT_SERVER_URL;
    // The invite's key is pinned: it came out of band, so it wins over what a hello says.
    const invited =
      invite === undefined ? undefined : { zone: invite.zone, publicKey: encodeTunnelKey(invite.publicKey) };
    // The endpoints given on the command line are remembered.
    const endpoints = withOverrides({ serverUrl }, config);
    let registered;
    try {
      registered = await registerNewDevice({
        transports: transportFactoryFor(config, { ...endpointsOf(endpoints), tunnel: invited }, context.logger),
        signer: identity.signer,
        displayName: name,
        timeoutMs: REGISTER_TIMEOUT_MS,
        signal: context.signal,
        logger: context.logger,
      });
    } catch (error) {
      if (isError(error, ErrorCode.ERROR_CODE_UNAVAILABLE) || isError(error, ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED)) {
        throw new CliError(`cannot register with ${serverUrl}: ${error.message}`, {
          code: "UNAVAILABLE",
          cause: error,
        });
      }
      throw error;
    }
    const tunnel = invited ?? tunnelFromHello(registered.tunnel);
    await store.saveProfile({
      ...endpoints,
      userId: registered.userId,
      deviceId: registered.deviceId,
      displayName: name,
      registeredAtMs: registered.serverTimeMs,
      ...(tunnel === undefined ? {} : { tunnel }),
    });
    await publishPreKeys(context, {
      dir,
      store,
      profile: (await store.getProfile()) ?? never("the profile was just saved"),
      signer: identity.signer,
      e2e: keyMaterial(identity, secrets.storageKey),
    });
    output.print({ userId: registered.userId, deviceId: registered.deviceId }, registered.userId);
  } finally {
    await store.close();
  }
}

/**
 * Connects once so the session publishes the device's prekey bundle (it does
 * at every login when the server lacks one). Offline, the next session does it.
 */
async function publishPreKeys(context: CommandContext, opened: OpenProfile): Promise<void> {
  await runMessenger(context, opened, { subscribe: false, sendOutbox: false }, async (messenger) => {
    const attempt = await firstAttempt(context, messenger, FIRST_ATTEMPT_TIMEOUT_MS);
    if (attempt.kind === "offline") {
      context.output.note(`prekeys not published yet (${attempt.reason}); the next listen or send does it`);
      return;
    }
    await messenger.publishPreKeys();
  });
}

function never(message: string): never {
  throw new Error(message);
}
