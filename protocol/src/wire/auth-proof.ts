/**
 * The exact bytes a device signs to register or log in. Client and server both
 * build them here, so the two can never disagree. A context string and a NUL
 * separate the two proofs, so a login signature is never a valid registration.
 */
import { concat } from "./bytes.ts";

const encoder = new TextEncoder();

export function registerProof(nonce: Uint8Array, identityKey: Uint8Array, displayName: string): Uint8Array {
  return concat(encoder.encode("remessenger/v1/register\u0000"), nonce, identityKey, encoder.encode(displayName));
}

export function loginProof(nonce: Uint8Array, deviceId: string): Uint8Array {
  return concat(encoder.encode("remessenger/v1/login\u0000"), nonce, encoder.encode(deviceId));
}

/** Signed by an existing device of the user: "this key may join my user until then". */
export function linkApprovalProof(userId: string, identityKey: Uint8Array, expiresAtMs: number): Uint8Array {
  const expiry = new Uint8Array(8);
  new DataView(expiry.buffer).setBigUint64(0, BigInt(expiresAtMs));
  return concat(
    encoder.encode("remessenger/v1/link-approval\u0000"),
    encoder.encode(userId),
    Uint8Array.of(0),
    identityKey,
    expiry,
  );
}

/** Signed by the new device: it holds the key it asks to link. */
export function linkProof(nonce: Uint8Array, identityKey: Uint8Array, userId: string): Uint8Array {
  return concat(encoder.encode("remessenger/v1/link\u0000"), nonce, identityKey, encoder.encode(userId));
}
