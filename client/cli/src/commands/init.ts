/**
 * `remessenger init --name NAME [--invite STRING]`: creates the profile — a
 * fresh identity key, registered with the server as a new user — and prints
 * the user id. The server's DNS tunnel (zone and key) is kept in the profile:
 * from the invite when one is given (then the server can be reached over
 * `--transport doh|dns` already for registering), else from the hello.
 * The key is on disk before the server hears of it.
 */
import { join } from "node:path";
import {
  ErrorCode,
  isError,
  registerNewDevice,
  type Invite,
  decodeInvite,
  encodeTunnelKey,
  selectEd25519Provider,
} from "../../../core/src/index.ts";
import { MAX_DISPLAY_NAME_CHARS } from "../../../core/src/wire/limits.ts";
import { DEFAULT_SERVER_URL } from "../cli-config.ts";
import { CliError, usageError } from "../cli-error.ts";
import type { CommandContext } from "../cli-session.ts";
import { DATABASE_FILE, ensureProfileDir, readIdentitySeed, signerFromSeed, writeIdentitySeed } from "../profile.ts";
import { SqliteClientStore } from "../sqlite-client-store.ts";
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
    // A key left by an init that crashed before registering is reused, not replaced.
    let seed = readIdentitySeed(dir);
    if (seed === undefined) {
      seed = (await selectEd25519Provider()).generateSeed();
      writeIdentitySeed(dir, seed);
    }
    const serverUrl = config.explicitServerUrl ?? invite?.serverUrl ?? DEFAULT_SERVER_URL;
    // The invite's key is pinned: it came out of band, so it wins over what a hello says.
    const invited =
      invite === undefined ? undefined : { zone: invite.zone, publicKey: encodeTunnelKey(invite.publicKey) };
    let registered;
    try {
      registered = await registerNewDevice({
        transports: transportFactoryFor(config, serverUrl, invited, context.logger),
        signer: await signerFromSeed(seed),
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
    const learned = registered.tunnel;
    const tunnel =
      invited ??
      (learned === undefined || learned.zone === ""
        ? undefined
        : { zone: learned.zone, publicKey: encodeTunnelKey(learned.publicKey) });
    await store.saveProfile({
      serverUrl,
      userId: registered.userId,
      deviceId: registered.deviceId,
      displayName: name,
      registeredAtMs: registered.serverTimeMs,
      ...(tunnel === undefined ? {} : { tunnel }),
    });
    output.print({ userId: registered.userId, deviceId: registered.deviceId }, registered.userId);
  } finally {
    await store.close();
  }
}
