/**
 * Session setup, PQXDH-style (Signal's PQXDH spec, with ML-KEM-768 and
 * separate Ed25519 signing / X25519 DH identity keys): the initiator turns the
 * responder's prekey bundle into a shared secret without the responder being
 * online, and the responder recomputes it from the first message.
 *
 *   DH1 = DH(IK_a, SPK_b)   DH2 = DH(EK_a, IK_b)   DH3 = DH(EK_a, SPK_b)
 *   DH4 = DH(EK_a, OPK_b)   (when a one-time prekey was handed out)
 *   (CT, SS) = ML-KEM-768.Encaps(PQPK_b)
 *   SK || HK_a || NHK_b = HKDF(0xFF*32 || DH1 || DH2 || DH3 [|| DH4] || SS)
 *
 * A recorded exchange stays secret against a future quantum attacker as long
 * as ML-KEM holds, and against today's attackers as long as X25519 holds.
 *
 * Every signature (identity DH key, signed prekey, PQ prekey) is verified;
 * a bad one is a SetupError, never a silent fallback to fewer keys.
 */
import {
  RemessengerError,
  ErrorCode,
  concat,
  hkdfSha256,
  identityDhProof,
  pqPreKeyProof,
  signedPreKeyProof,
  type X25519KeyPair,
  type X25519Provider,
  type PreKeyBundle,
  type PreKeyMessage,
} from "@remessenger/protocol";
import type { DeviceSigner, Ed25519Provider } from "../crypto/device-signer.ts";
import { type RatchetState, initReceiver, initSender } from "./double-ratchet.ts";
import { type MlKemProvider, nobleMlKem } from "../crypto/ml-kem.ts";

const SETUP_INFO = new TextEncoder().encode("remessenger/v1/pqxdh X25519 SHA-256 ML-KEM-768");
const AD_LABEL = new TextEncoder().encode("remessenger/v1/session\u0000");

/** The device's long-term keys: Ed25519 signs, X25519 agrees, and the first vouches for the second. */
export interface DeviceIdentity {
  signer: DeviceSigner;
  dh: X25519KeyPair;
  /** Ed25519 signature of identityDhProof(dh.publicKey). */
  dhSignature: Uint8Array;
}

export interface SetupDeps {
  x25519: X25519Provider;
  ed25519: Ed25519Provider;
  /** Makes the setup's ephemeral key (default x25519.generateKeyPair; a hook for key logs). */
  generateEphemeral?: () => Promise<X25519KeyPair>;
  /** ML-KEM-768 (default the portable @noble one). */
  mlKem?: MlKemProvider;
}

/** The setup's providers; with `onKeyMade`, every key pair a session makes is reported too (a test's key log). */
export function setupDepsFor(providers: {
  x25519: X25519Provider;
  ed25519: Ed25519Provider;
  mlKem?: MlKemProvider;
  onKeyMade?: (kind: string, pair: { publicKey: Uint8Array; privateKey: Uint8Array }) => void;
}): SetupDeps {
  const { x25519, ed25519, onKeyMade } = providers;
  const mlKem = providers.mlKem ?? nobleMlKem;
  if (onKeyMade === undefined) return { x25519, ed25519, mlKem };
  // Every key pair a session makes goes through here: the setup's ephemeral key, then ratchet keys.
  return {
    ed25519,
    mlKem,
    generateEphemeral: async () => {
      const pair = await x25519.generateKeyPair();
      onKeyMade("setup-ephemeral", pair);
      return pair;
    },
    x25519: {
      ...x25519,
      name: x25519.name,
      generateKeyPair: async (): Promise<X25519KeyPair> => {
        const pair = await x25519.generateKeyPair();
        onKeyMade("ratchet", pair);
        return pair;
      },
    },
  };
}

/** A setup failed because of what the peer sent: a bad signature, a missing prekey. */
export class SetupError extends RemessengerError {
  constructor(message: string) {
    super(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message);
  }
}

/** What a new session starts from, on either side. */
export interface SetupResult {
  ratchet: RatchetState;
  /** Both identities, bound into every message's associated data. */
  associatedData: Uint8Array;
  /** The initiator's ephemeral key: names the setup, so a repeated prekey message finds its session. */
  baseKey: Uint8Array;
}

/** The setup fields the initiator repeats in its messages until the responder answers. */
export interface PendingPreKey {
  baseKey: Uint8Array;
  signedPreKeyId: number;
  oneTimePreKeyId: number | undefined;
  pqPreKeyId: number;
  pqCiphertext: Uint8Array;
}

/** Builds our identity: a new X25519 key signed by the Ed25519 key. */
export async function makeDeviceIdentity(signer: DeviceSigner, dh: X25519KeyPair): Promise<DeviceIdentity> {
  return { signer, dh, dhSignature: await signer.sign(identityDhProof(dh.publicKey)) };
}

/** Checks every signature of a bundle against its Ed25519 identity key; throws SetupError. */
export async function verifyBundle(ed25519: Ed25519Provider, bundle: PreKeyBundle): Promise<void> {
  const { identityKey, signedPreKey, pqPreKey } = bundle;
  if (signedPreKey === undefined || pqPreKey === undefined) {
    throw new SetupError(`device ${bundle.deviceId} has no complete prekey bundle`);
  }
  const checks: Array<[string, Uint8Array, Uint8Array]> = [
    ["identity DH key", identityDhProof(bundle.identityDhKey), bundle.identityDhSignature],
    ["signed prekey", signedPreKeyProof(signedPreKey.keyId, signedPreKey.publicKey), signedPreKey.signature],
    ["PQ prekey", pqPreKeyProof(pqPreKey.keyId, pqPreKey.publicKey), pqPreKey.signature],
  ];
  for (const [what, data, signature] of checks) {
    if (!(await ed25519.verify(identityKey, data, signature))) {
      throw new SetupError(`the ${what} of device ${bundle.deviceId} is not signed by its identity key`);
    }
  }
}

/** The initiator's side: a session from the peer's bundle, and the fields its first messages carry. */
export async function initiateSession(
  deps: SetupDeps,
  own: DeviceIdentity,
  bundle: PreKeyBundle,
): Promise<SetupResult & { pending: PendingPreKey }> {
  await verifyBundle(deps.ed25519, bundle);
  const signedPreKey = bundle.signedPreKey;
  const pqPreKey = bundle.pqPreKey;
  if (signedPreKey === undefined || pqPreKey === undefined) throw new SetupError("incomplete bundle");
  const { x25519 } = deps;
  const ephemeral = await (deps.generateEphemeral ?? (() => x25519.generateKeyPair()))();
  const dhs = [
    await x25519.sharedSecret(own.dh.privateKey, signedPreKey.publicKey),
    await x25519.sharedSecret(ephemeral.privateKey, bundle.identityDhKey),
    await x25519.sharedSecret(ephemeral.privateKey, signedPreKey.publicKey),
  ];
  const oneTime = bundle.oneTimePreKey;
  if (oneTime !== undefined) dhs.push(await x25519.sharedSecret(ephemeral.privateKey, oneTime.publicKey));
  let encapsulated;
  try {
    encapsulated = (deps.mlKem ?? nobleMlKem).encapsulate(pqPreKey.publicKey);
  } catch (cause) {
    throw new SetupError(`the PQ prekey of device ${bundle.deviceId} is unusable: ${String(cause)}`);
  }
  const [sharedKey, headerKeyA, nextHeaderKeyB] = deriveSecrets(dhs, encapsulated.sharedSecret);
  const ratchet = await initSender(x25519, sharedKey, signedPreKey.publicKey, headerKeyA, nextHeaderKeyB);
  return {
    ratchet,
    associatedData: sessionAssociatedData(
      own.signer.publicKey,
      own.dh.publicKey,
      bundle.identityKey,
      bundle.identityDhKey,
    ),
    baseKey: ephemeral.publicKey,
    pending: {
      baseKey: ephemeral.publicKey,
      signedPreKeyId: signedPreKey.keyId,
      oneTimePreKeyId: oneTime?.keyId,
      pqPreKeyId: pqPreKey.keyId,
      pqCiphertext: encapsulated.cipherText,
    },
  };
}

/** The private prekeys a responder needs for one prekey message. */
export interface ResponderKeys {
  signedPreKey: X25519KeyPair;
  /** Undefined when the message names no one-time prekey. */
  oneTimePreKey: X25519KeyPair | undefined;
  pqSecretKey: Uint8Array;
}

/** The responder's side: the same secrets, from a prekey message and our private prekeys. */
export async function acceptSession(
  deps: SetupDeps,
  own: DeviceIdentity,
  message: PreKeyMessage,
  keys: ResponderKeys,
): Promise<SetupResult> {
  if (
    !(await deps.ed25519.verify(
      message.identityKey,
      identityDhProof(message.identityDhKey),
      message.identityDhSignature,
    ))
  ) {
    throw new SetupError("the sender's identity DH key is not signed by its identity key");
  }
  const { x25519 } = deps;
  let dhs: Uint8Array[];
  try {
    dhs = [
      await x25519.sharedSecret(keys.signedPreKey.privateKey, message.identityDhKey),
      await x25519.sharedSecret(own.dh.privateKey, message.baseKey),
      await x25519.sharedSecret(keys.signedPreKey.privateKey, message.baseKey),
    ];
    if (keys.oneTimePreKey !== undefined)
      dhs.push(await x25519.sharedSecret(keys.oneTimePreKey.privateKey, message.baseKey));
  } catch (cause) {
    throw new SetupError(`the sender's setup keys are unusable: ${String(cause)}`);
  }
  let pqSecret: Uint8Array;
  try {
    pqSecret = (deps.mlKem ?? nobleMlKem).decapsulate(message.pqCiphertext, keys.pqSecretKey);
  } catch (cause) {
    throw new SetupError(`the PQ ciphertext is unusable: ${String(cause)}`);
  }
  const [sharedKey, headerKeyA, nextHeaderKeyB] = deriveSecrets(dhs, pqSecret);
  return {
    ratchet: initReceiver(sharedKey, keys.signedPreKey, headerKeyA, nextHeaderKeyB),
    associatedData: sessionAssociatedData(
      message.identityKey,
      message.identityDhKey,
      own.signer.publicKey,
      own.dh.publicKey,
    ),
    baseKey: message.baseKey,
  };
}

function deriveSecrets(dhs: readonly Uint8Array[], pqSecret: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  const ikm = concat(new Uint8Array(32).fill(0xff), ...dhs, pqSecret);
  const out = hkdfSha256(ikm, new Uint8Array(32), SETUP_INFO, 96);
  ikm.fill(0);
  return [out.slice(0, 32), out.slice(32, 64), out.slice(64, 96)];
}

/** AD = label || initiator Ed25519 || initiator X25519 || responder Ed25519 || responder X25519. */
function sessionAssociatedData(
  initiatorKey: Uint8Array,
  initiatorDhKey: Uint8Array,
  responderKey: Uint8Array,
  responderDhKey: Uint8Array,
): Uint8Array {
  return concat(AD_LABEL, initiatorKey, initiatorDhKey, responderKey, responderDhKey);
}
