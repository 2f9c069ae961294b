/**
 * Linking a new device to an existing user, the texts the two devices pass
 * by hand: the new device's link code (its public identity key), and the
 * existing device's approval of it (a signature that lets that key join the
 * user for APPROVAL_VALIDITY_MS). The server and every contact check the
 * signature, so the new device is trusted through the one that approved it.
 *
 * Invariant: decoding refuses anything malformed with a LinkFormatError
 * saying what is wrong; nothing half-read leaves here.
 */
import { base64urlnopad } from "@scure/base";
import { linkApprovalProof, ErrorCode, RemessengerError } from "@remessenger/protocol";
import type { DeviceSigner } from "../crypto/device-signer.ts";
import type { LinkApproval } from "../session/device-auth.ts";
import type { DeviceProfile } from "../store/client-store.ts";

/** How long an approval lets a new device join. */
export const APPROVAL_VALIDITY_MS = 10 * 60 * 1000;

/**
 * A link code is the new device's public key behind a fixed prefix: bare
 * base64url may start with "-", which a command line takes for an option.
 */
export const LINK_CODE_PREFIX = "rmlink1.";

/** A link code or approval that cannot be read. */
export class LinkFormatError extends RemessengerError {
  override readonly name = "LinkFormatError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message, options);
  }
}

/** An approval as it travels: the signed approval, the key it is for and the server to join. */
export interface ApprovalToken extends LinkApproval {
  identityKey: Uint8Array;
  serverUrl: string;
}

/** The code a new device shows for its public identity key. */
export function encodeLinkCode(identityKey: Uint8Array): string {
  return `${LINK_CODE_PREFIX}${base64urlnopad.encode(identityKey)}`;
}

/** The identity key in a link code (bare keys, printed before the prefix existed, are taken too). */
export function decodeLinkCode(code: string): Uint8Array {
  const trimmed = code.trim();
  let key: Uint8Array;
  try {
    key = base64urlnopad.decode(
      trimmed.startsWith(LINK_CODE_PREFIX) ? trimmed.slice(LINK_CODE_PREFIX.length) : trimmed,
    );
  } catch {
    throw new LinkFormatError("not a link code (remessenger link request prints one on the new device)");
  }
  if (key.length !== 32) throw new LinkFormatError("not a link code: it carries no 32-byte key");
  return key;
}

/** Signs, as this device, the approval for the key of a link code. */
export async function approveLink(
  signer: DeviceSigner,
  profile: Pick<DeviceProfile, "userId" | "deviceId" | "serverUrl">,
  identityKey: Uint8Array,
  nowMs: number,
): Promise<ApprovalToken> {
  const expiresAtMs = nowMs + APPROVAL_VALIDITY_MS;
  const signature = await signer.sign(linkApprovalProof(profile.userId, identityKey, expiresAtMs));
  return {
    userId: profile.userId,
    approvedByDeviceId: profile.deviceId,
    expiresAtMs,
    signature,
    identityKey,
    serverUrl: profile.serverUrl,
  };
}

export function encodeApproval(token: ApprovalToken): string {
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

export function decodeApproval(text: string): ApprovalToken {
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
    throw new LinkFormatError(`not a link approval (${cause instanceof Error ? cause.message : String(cause)})`);
  }
}
