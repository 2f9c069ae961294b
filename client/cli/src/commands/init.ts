/**
 * `remessenger init --name NAME [--invite STRING]`: creates the profile — a
 * fresh identity key, registered with the server as a new user — and prints
 * the user id. The server's DNS tunnel (zone and key) is kept in the profile:
 * from the invite when one is given (then the server can be reached over
 * `--transport doh|dns` already for registering), else from the hello.
 * The core makes the profile (createProfile): the keys are on disk (encrypted,
 * key-file.ts) before the server hears of them; after registering, the
 * device publishes its prekeys so others can start end-to-end sessions with
 * it while it is offline.
 */
import { join } from "node:path";
import {
  ErrorCode,
  isError,
  type Invite,
  type Messenger,
  createProfile,
  decodeInvite,
  encodeTunnelKey,
  withEndpointOverrides,
} from "@remessenger/client-core";
import { MAX_DISPLAY_NAME_CHARS } from "@remessenger/protocol";
import { SqliteClientStore } from "@remessenger/client-core/node";
import { DEFAULT_SERVER_URL } from "../cli-config.ts";
import { CliError, usageError } from "../cli-error.ts";
import {
  type CommandContext,
  FIRST_ATTEMPT_TIMEOUT_MS,
  REQUEST_TIMEOUT_MS,
  firstAttempt,
  runMessenger,
} from "../cli-session.ts";
import {
  DATABASE_FILE,
  endpointOverrides,
  ensureProfileDir,
  keyProblem,
  messengerSettings,
  profileAccess,
} from "../profile.ts";
import { transportProblem } from "../transport/cli-transports.ts";

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
    const serverUrl = config.explicitServerUrl ?? invite?.serverUrl ?? DEFAULT_SERVER_URL;
    // The endpoints given on the command line are remembered; the invite's tunnel key is pinned
    // (it came out of band, so it wins over what a hello says).
    const endpoints = {
      ...withEndpointOverrides({ serverUrl }, endpointOverrides(config)),
      ...(invite === undefined ? {} : { tunnel: { zone: invite.zone, publicKey: encodeTunnelKey(invite.publicKey) } }),
    };
    let messenger: Messenger;
    try {
      // Keys left by an init that crashed before registering are reused, not replaced.
      messenger = await createProfile({
        ...profileAccess(config, store, context.logger),
        endpoints,
        displayName: name,
        join: { kind: "register" },
        timeoutMs: REGISTER_TIMEOUT_MS,
        signal: context.signal,
        messenger: messengerSettings(config, { subscribe: false, sendOutbox: false }, REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      if (isError(error, ErrorCode.ERROR_CODE_UNAVAILABLE) || isError(error, ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED)) {
        throw new CliError(`cannot register with ${serverUrl}: ${error.message}`, {
          code: "UNAVAILABLE",
          cause: error,
        });
      }
      throw keyProblem(transportProblem(error, serverUrl), dir);
    }
    await publishPreKeys(context, messenger);
    const { userId, deviceId } = messenger.profile;
    output.print({ userId, deviceId }, userId);
  } finally {
    await store.close();
  }
}

/**
 * Connects once so the session publishes the device's prekey bundle (it does
 * at every login when the server lacks one). Offline, the next session does it.
 */
async function publishPreKeys(context: CommandContext, messenger: Messenger): Promise<void> {
  await runMessenger(context, messenger, undefined, async () => {
    const attempt = await firstAttempt(context, messenger, FIRST_ATTEMPT_TIMEOUT_MS);
    if (attempt.kind === "offline") {
      context.output.note(`prekeys not published yet (${attempt.reason}); the next listen or send does it`);
      return;
    }
    await messenger.publishPreKeys();
  });
}
