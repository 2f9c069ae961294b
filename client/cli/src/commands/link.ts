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
import { base64urlnopad } from "@scure/base";
import {
  ErrorCode,
  isError,
  isId,
  type LinkApproval,
  linkApprovalProof,
  linkNewDevice,
} from "@remessenger/client-core";
import { DEFAULT_SERVER_URL } from "../cli-config.ts";
import { CliError, usageError } from "../cli-error.ts";
import { type CommandContext, createSession, FIRST_ATTEMPT_TIMEOUT_MS, firstAttempt } from "../cli-session.ts";
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

/** How long an approval lets a new device join. */
export const APPROVAL_VALIDITY_MS = 10 * 60 * 1000;
const LINK_TIMEOUT_MS = 10_000;

interface ApprovalToken extends LinkApproval {
  identityKey: Uint8Array;
  serverUrl: string;
}

function encodeApproval(token: ApprovalToken): string {
  const json = JSON.stringify({
    u: token.userId,
    d: token.approvedByDeviceId,
    e: token.expiresAtMs,
    s: base64urlnopad.encode(token.signature),
    k: base64urlnopad.encode(token.identityKey),
    server: token.serverUrl,
  });
  return base64urlnopad.encode(new TextEncoder().encode(json));
}

function decodeApproval(text: string): ApprovalToken {
  try {
    const value = JSON.parse(new TextDecoder().decode(base64urlnopad.decode(text.trim()))) as Record<string, unknown>;
    const { u, d, e, s, k, server } = value;
    if (
      typeof u !== "string" ||
      typeof d !== "string" ||
      typeof e !== "number" ||
      typeof s !== "string" ||
      typeof k !== "string" ||
      typeof server !== "string"
    ) {
      throw new Error("fields missing");
    }
    return {
      userId: u,
      approvedByDeviceId: d,
      expiresAtMs: e,
      signature: base64urlnopad.decode(s),
      identityKey: base64urlnopad.decode(k),
      serverUrl: server,
    };
  } catch (cause) {
    throw usageError(`not a link approval (${cause instanceof Error ? cause.message : String(cause)})`);
  }
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
  const code = `${LINK_CODE_PREFIX}${base64urlnopad.encode(identity.signer.publicKey)}`;
  context.output.print(
    { linkCode: code },
    `${code}\napprove it on one of your devices: remessenger link approve ${code}`,
  );
}

/**
 * A link code is the new device's public key behind a fixed prefix: bare
 * base64url may start with "-", which a command line takes for an option.
 */
export const LINK_CODE_PREFIX = "rmlink1.";

/** On an existing device: sign the approval for a link code. */
export async function linkApproveCommand(context: CommandContext, code: string): Promise<void> {
  let identityKey: Uint8Array;
  const trimmed = code.trim();
  try {
    // Bare keys (codes printed before the prefix) are still taken.
    identityKey = base64urlnopad.decode(
      trimmed.startsWith(LINK_CODE_PREFIX) ? trimmed.slice(LINK_CODE_PREFIX.length) : trimmed,
    );
  } catch {
    throw usageError("not a link code (remessenger link request prints one on the new device)");
  }
  if (identityKey.length !== 32) throw usageError("not a link code: it carries no 32-byte key");
  const opened = await openProfile(context.config.profileDir, context.config);
  try {
    const { profile, signer } = opened;
    const expiresAtMs = Date.now() + APPROVAL_VALIDITY_MS;
    const signature = await signer.sign(linkApprovalProof(profile.userId, identityKey, expiresAtMs));
    const approval = encodeApproval({
      userId: profile.userId,
      approvedByDeviceId: profile.deviceId,
      expiresAtMs,
      signature,
      identityKey,
      serverUrl: profile.serverUrl,
    });
    context.output.print(
      { approval, userId: profile.userId, expiresAtMs },
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
  const token = decodeApproval(text);
  if (!isId("user", token.userId) || !isId("device", token.approvedByDeviceId))
    throw usageError("the approval names no valid user or device");
  const dir = context.config.profileDir;
  const secrets = await readDeviceSecrets(dir);
  if (secrets === undefined) throw usageError(`no keys in ${dir}: run remessenger link request there first`);
  const identity = await identityFrom(secrets);
  if (base64urlnopad.encode(identity.signer.publicKey) !== base64urlnopad.encode(token.identityKey)) {
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
    const session = createSession(
      context,
      { dir, store, profile, signer: identity.signer, e2e: keyMaterial(identity, secrets.storageKey) },
      { subscribe: false, sendOutbox: false },
    );
    await session.start();
    try {
      const attempt = await firstAttempt(session, FIRST_ATTEMPT_TIMEOUT_MS, context.signal);
      if (attempt.kind === "connected") await session.maintainPreKeys();
    } finally {
      await session.stop();
    }
    context.output.print(
      { userId: linked.userId, deviceId: linked.deviceId },
      `linked: user ${linked.userId}, device ${linked.deviceId}`,
    );
  } finally {
    await store.close();
  }
}
