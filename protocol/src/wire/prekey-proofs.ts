/**
 * The exact bytes a device's Ed25519 identity key signs to vouch for its
 * X25519 identity key and its prekeys (proto/remessenger/v1/prekeys.proto).
 * Builders and verifiers on every side use these, so they cannot disagree.
 * A context string and a NUL make each signature valid for one purpose only.
 */
import { concat } from "./bytes.ts";

const encoder = new TextEncoder();

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

// Each session setup builds several proofs: the labels are encoded once.
const IDENTITY_DH_LABEL = encoder.encode("remessenger/v1/identity-dh\u0000");
const SIGNED_PREKEY_LABEL = encoder.encode("remessenger/v1/signed-prekey\u0000");
const PQ_PREKEY_LABEL = encoder.encode("remessenger/v1/pq-prekey\u0000");

export function identityDhProof(identityDhKey: Uint8Array): Uint8Array {
  return concat(IDENTITY_DH_LABEL, identityDhKey);
}

export function signedPreKeyProof(keyId: number, publicKey: Uint8Array): Uint8Array {
  return concat(SIGNED_PREKEY_LABEL, u32(keyId), publicKey);
}

export function pqPreKeyProof(keyId: number, publicKey: Uint8Array): Uint8Array {
  return concat(PQ_PREKEY_LABEL, u32(keyId), publicKey);
}
