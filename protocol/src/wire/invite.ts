/**
 * Invite strings: how a user who can only reach DNS learns where the server
 * is and how to reach its DNS tunnel — the server URL, the tunnel zone and
 * the gateway's static key (which the client then pins).
 *
 *   rmsg1.<base64url(JSON {"s": serverUrl, "z": zone, "k": base64url(key)})>
 *
 * `decodeInvite(encodeInvite(x))` is `x`; anything else throws InviteError
 * with a message for the user.
 */
import { base64urlnopad } from "@scure/base";
import { normalizeZone } from "../tunnel/tunnel-name.ts";
import { RemessengerError } from "./errors.ts";
import { ErrorCode } from "./proto.ts";

const PREFIX = "rmsg1.";
export const TUNNEL_KEY_BYTES = 32;

export interface Invite {
  serverUrl: string;
  zone: string;
  publicKey: Uint8Array;
}

/** An invite string that does not decode (INVALID_ARGUMENT). */
export class InviteError extends RemessengerError {
  override readonly name = "InviteError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message, options);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeInvite(invite: Invite): string {
  const body = { s: invite.serverUrl, z: invite.zone, k: base64urlnopad.encode(invite.publicKey) };
  return PREFIX + base64urlnopad.encode(encoder.encode(JSON.stringify(body)));
}

export function decodeInvite(text: string): Invite {
  const trimmed = text.trim();
  if (!trimmed.startsWith(PREFIX)) throw new InviteError(`an invite starts with ${PREFIX}`);
  let body: unknown;
  try {
    body = JSON.parse(decoder.decode(base64urlnopad.decode(trimmed.slice(PREFIX.length))));
  } catch {
    throw new InviteError("the invite is damaged (not base64url JSON); copy it again");
  }
  if (typeof body !== "object" || body === null) throw new InviteError("the invite is damaged");
  const { s, z, k } = body as Record<string, unknown>;
  if (typeof s !== "string" || typeof z !== "string" || typeof k !== "string") {
    throw new InviteError("the invite lacks the server, zone or key");
  }
  let publicKey: Uint8Array;
  try {
    publicKey = base64urlnopad.decode(k);
  } catch {
    throw new InviteError("the invite's key is damaged");
  }
  if (publicKey.length !== TUNNEL_KEY_BYTES) throw new InviteError("the invite's key is not 32 bytes");
  let zone: string;
  try {
    zone = normalizeZone(z);
  } catch (error) {
    throw new InviteError(`the invite's zone is invalid: ${(error as Error).message}`);
  }
  try {
    new URL(s);
  } catch {
    throw new InviteError("the invite's server URL is invalid");
  }
  return { serverUrl: s, zone, publicKey };
}

/** The gateway key as text (profiles, logs): base64url. */
export function encodeTunnelKey(key: Uint8Array): string {
  return base64urlnopad.encode(key);
}

export function decodeTunnelKey(text: string): Uint8Array {
  const key = base64urlnopad.decode(text);
  if (key.length !== TUNNEL_KEY_BYTES) throw new InviteError("a tunnel key is 32 bytes");
  return key;
}
