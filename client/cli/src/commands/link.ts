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
  decodeApproval,
  decodeLinkCode,
  encodeApproval,
  encodeLinkCode,
  isError,
  isId,
  linkNewDevice,
} from "@remessenger/client-core";
import { DEFAULT_SERVER_URL } from "../cli-config.ts";
import { CliError, usageError } from "../cli-error.ts";
import {
  type CommandContext,
  FIRST_ATTEMPT_TIMEOUT_MS,
  createMessenger,
  firstAttempt,
  runMessenger,
} from "../cli-session.ts";
import {
  DATABASE_FILE,
  endpointsOf,
  ensureProfileDir,
  identityFrom,
  keyMaterial,
  newDeviceSecrets,
  openProfile,
  readDeviceSecrets,
  tunnelFromHello,
  withOverrides,
  writeDeviceSecrets,
} from "../profile.ts";
import { SqliteClientStore } from "@remessenger/client-core/node";
import { transportFactoryFor } from "../transport/cli-transports.ts";

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
  let secrets = await readDeviceSecrets(dir);
  if (secrets === undefined) {
    secrets = await newDeviceSecrets();
    await writeDeviceSecrets(dir, secrets);
  }
  const identity = await identityFrom(secrets);
  const code = encodeLinkCode(identity.signer.publicKey);
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
  const opened = await openProfile(context.config.profileDir, context.config);
  try {
    // Signing needs no connection: the messenger is not started.
    const messenger = createMessenger(context, opened, { subscribe: false, sendOutbox: false });
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
    await opened.store.close();
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
  const dir = context.config.profileDir;
  const secrets = await readDeviceSecrets(dir);
  if (secrets === undefined) throw usageError(`no keys in ${dir}: run remessenger link request there first`);
  const identity = await identityFrom(secrets);
  if (encodeLinkCode(identity.signer.publicKey) !== encodeLinkCode(token.identityKey)) {
    throw usageError("this approval is for another device's link code");
  }
  const serverUrl = context.config.explicitServerUrl ?? (token.serverUrl === "" ? DEFAULT_SERVER_URL : token.serverUrl);
  // The endpoints given on the command line are remembered, as at init.
  const endpoints = withOverrides({ serverUrl }, context.config);
  let linked;
  try {
    linked = await linkNewDevice({
      transports: transportFactoryFor(context.config, endpointsOf(endpoints), context.logger),
      signer: identity.signer,
      approval: token,
      timeoutMs: LINK_TIMEOUT_MS,
      signal: context.signal,
      logger: context.logger,
    });
  } catch (error) {
    if (isError(error, ErrorCode.ERROR_CODE_UNAVAILABLE) || isError(error, ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED)) {
      throw new CliError(`cannot reach ${serverUrl}: ${error.message}`, { code: "UNAVAILABLE", cause: error });
    }
    throw error;
  }
  const store = SqliteClientStore.open(join(dir, DATABASE_FILE));
  try {
    const tunnel = tunnelFromHello(linked.tunnel);
    const profile = {
      ...endpoints,
      userId: linked.userId,
      deviceId: linked.deviceId,
      displayName: options.name,
      registeredAtMs: linked.serverTimeMs,
      ...(tunnel === undefined ? {} : { tunnel }),
    };
    await store.saveProfile(profile);
    const opened = { dir, store, profile, signer: identity.signer, e2e: keyMaterial(identity, secrets.storageKey) };
    await runMessenger(context, opened, { subscribe: false, sendOutbox: false }, async (messenger) => {
      const attempt = await firstAttempt(context, messenger, FIRST_ATTEMPT_TIMEOUT_MS);
      if (attempt.kind === "connected") await messenger.publishPreKeys();
    });
    context.output.print(
      { userId: linked.userId, deviceId: linked.deviceId },
      `linked: user ${linked.userId}, device ${linked.deviceId}`,
    );
  } finally {
    await store.close();
  }
}
