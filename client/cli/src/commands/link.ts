/**
 * Linking a new device to an existing user (multi-device), in three steps:
 *
 *   new device:      remessenger --profile NEW link request
 *                    → prints a link code (the new device's public identity key;
 *                      its encrypted key file is written now)
 *   existing device: remessenger --profile OLD link approve CODE
 *                    → prints an approval: a signature by this device that lets
 *                      that key join this user for the next 10 minutes
 *   new device:      remessenger --profile NEW link finish APPROVAL --name NAME
 *                    → the server checks both signatures, adds the device (it
 *                      receives what is sent from then on), and the device
 *                      publishes its prekeys
 *
 * Contacts trust the new device without a safety-number change prompt because
 * the approval chains it to a device they trusted (their client checks the
 * signature, not the server's word).
 */
import { join } from "node:path";
import {
  ErrorCode,
  LinkFormatError,
  type Messenger,
  createProfile,
  decodeApproval,
  decodeLinkCode,
  deviceKeysOf,
  encodeApproval,
  encodeLinkCode,
  ensureDeviceSecrets,
  isError,
  isId,
  withEndpointOverrides,
} from "@remessenger/client-core";
import { SqliteClientStore } from "@remessenger/client-core/node";
import { DEFAULT_SERVER_URL } from "../cli-config.ts";
import { CliError, usageError } from "../cli-error.ts";
import {
  type CommandContext,
  FIRST_ATTEMPT_TIMEOUT_MS,
  REQUEST_TIMEOUT_MS,
  firstAttempt,
  openCommandProfile,
  runMessenger,
} from "../cli-session.ts";
import {
  DATABASE_FILE,
  NODE_PROVIDERS,
  endpointOverrides,
  ensureProfileDir,
  keyFileKeeper,
  keyProblem,
  messengerSettings,
  profileAccess,
} from "../profile.ts";
import { transportProblem } from "../transport/cli-transports.ts";

const LINK_TIMEOUT_MS = 10_000;

/** A malformed code or approval is bad input (exit 2), with the reason. */
function asUsageError(error: unknown): unknown {
  return error instanceof LinkFormatError ? usageError(error.message) : error;
}

/** On the new device: make its keys and print the code the existing device approves. */
export async function linkRequestCommand(context: CommandContext): Promise<void> {
  const dir = context.config.profileDir;
  ensureProfileDir(dir);
  const store = SqliteClientStore.open(join(dir, DATABASE_FILE));
  try {
    const existing = await store.getProfile();
    if (existing !== undefined) throw usageError(`${dir} is a registered device already (user ${existing.userId})`);
  } finally {
    await store.close();
  }
  // Kept now, before anyone approves them: `link finish` (the core's createProfile) reuses them.
  let keys;
  try {
    keys = await deviceKeysOf(await ensureDeviceSecrets(keyFileKeeper(dir), NODE_PROVIDERS), NODE_PROVIDERS);
  } catch (error) {
    throw keyProblem(error, dir);
  }
  const code = encodeLinkCode(keys.signer.publicKey);
  context.output.print(
    { linkCode: code },
    `${code}\napprove it on one of your devices: remessenger link approve ${code}`,
  );
}

/** On an existing device: sign the approval for a link code. */
export async function linkApproveCommand(context: CommandContext, code: string): Promise<void> {
  // A bad code is refused before the profile is opened.
  try {
    decodeLinkCode(code);
  } catch (error) {
    throw asUsageError(error);
  }
  // Signing needs no connection: the messenger is not started.
  const { messenger, store } = await openCommandProfile(context, { subscribe: false, sendOutbox: false });
  try {
    let token;
    try {
      token = await messenger.approveLink(code);
    } catch (error) {
      throw asUsageError(error);
    }
    const approval = encodeApproval(token);
    context.output.print(
      { approval, userId: token.userId, expiresAtMs: token.expiresAtMs },
      `${approval}\non the new device (within 10 minutes): remessenger link finish ${approval} --name NAME`,
    );
  } finally {
    await store.close();
  }
}

/** On the new device: join the user with the approval, then publish prekeys. */
export async function linkFinishCommand(
  context: CommandContext,
  text: string,
  options: { name: string },
): Promise<void> {
  let token;
  try {
    token = decodeApproval(text);
  } catch (error) {
    throw asUsageError(error);
  }
  if (!isId("user", token.userId) || !isId("device", token.approvedByDeviceId))
    throw usageError("the approval names no valid user or device");
  const { config } = context;
  const dir = config.profileDir;
  const keeper = keyFileKeeper(dir);
  let secrets;
  try {
    secrets = await keeper.read();
  } catch (error) {
    throw keyProblem(error, dir);
  }
  if (secrets === undefined) throw usageError(`no keys in ${dir}: run remessenger link request there first`);
  const keys = await deviceKeysOf(secrets, NODE_PROVIDERS);
  if (encodeLinkCode(keys.signer.publicKey) !== encodeLinkCode(token.identityKey)) {
    throw usageError("this approval is for another device's link code");
  }
  const serverUrl = config.explicitServerUrl ?? (token.serverUrl === "" ? DEFAULT_SERVER_URL : token.serverUrl);
  const store = SqliteClientStore.open(join(dir, DATABASE_FILE));
  try {
    let messenger: Messenger;
    try {
      messenger = await createProfile({
        ...profileAccess(config, store, context.logger),
        // The keys read above: asked for once.
        secrets: keeper,
        // The endpoints given on the command line are remembered, as at init.
        endpoints: withEndpointOverrides({ serverUrl }, endpointOverrides(config)),
        displayName: options.name,
        join: { kind: "link", approval: token },
        timeoutMs: LINK_TIMEOUT_MS,
        signal: context.signal,
        messenger: messengerSettings(config, { subscribe: false, sendOutbox: false }, REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      if (isError(error, ErrorCode.ERROR_CODE_UNAVAILABLE) || isError(error, ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED)) {
        throw new CliError(`cannot reach ${serverUrl}: ${error.message}`, { code: "UNAVAILABLE", cause: error });
      }
      throw keyProblem(transportProblem(error, serverUrl), dir);
    }
    await runMessenger(context, messenger, undefined, async () => {
      const attempt = await firstAttempt(context, messenger, FIRST_ATTEMPT_TIMEOUT_MS);
      if (attempt.kind === "connected") await messenger.publishPreKeys();
    });
    const { userId, deviceId } = messenger.profile;
    context.output.print({ userId, deviceId }, `linked: user ${userId}, device ${deviceId}`);
  } finally {
    await store.close();
  }
}
