/**
 * The server's side of end-to-end encryption: it keeps devices' public
 * prekeys and hands them out, and it lets an existing device approve a new
 * device for its user. It never sees a private key or a plaintext.
 *
 * Invariants:
 * - Every signature the server stores (identity DH key, signed prekey, PQ
 *   prekeys) verified against the device's Ed25519 identity key first, so a
 *   bundle handed out is one the device made; clients verify again anyway.
 * - A one-time prekey is handed out once (the store's atomic claim).
 * - A device joins a user only with a fresh challenge signed by the new key
 *   and an unexpired approval signed by a device of that user; it then gets a
 *   cursor at the head of each of the user's chats, so it receives what is
 *   sent from then on.
 */
import {
  equalBytes,
  RemessengerError,
  isId,
  newId,
  ED25519_PUBLIC_KEY_BYTES,
  ED25519_SIGNATURE_BYTES,
  MAX_DEVICES_PER_USER,
  MAX_LINK_APPROVAL_MS,
  MAX_PREKEYS_PER_PUBLISH,
  MAX_STORED_PREKEYS,
  ML_KEM_768_PUBLIC_KEY_BYTES,
  PREKEY_LOW_WATER,
  X25519_PUBLIC_KEY_BYTES,
  linkApprovalProof,
  linkProof,
  identityDhProof,
  pqPreKeyProof,
  signedPreKeyProof,
  ErrorCode,
  type GetPreKeyBundlesRequest,
  type GetPreKeyBundlesResponse,
  type LinkDeviceRequest,
  type PreKeyStock,
  type PublishPreKeysRequest,
} from "@remessenger/protocol";
import type { PreKeyCounts, PreKeyUpload, StoredSignedPreKey } from "../store/device-keys.ts";
import type { Store } from "../store/store.ts";
import type { Clock } from "./clock.ts";
import { type ChallengeBook, verifyDeviceSignature } from "./device-auth.ts";

export interface DeviceKeysDeps {
  store: Store;
  clock: Clock;
  random: (n: number) => Uint8Array;
  challenges: ChallengeBook;
}

function invalid(message: string): RemessengerError {
  return new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message);
}

function requireSize(bytes: Uint8Array, size: number, field: string): void {
  if (bytes.length !== size) throw invalid(`${field} must be ${size} bytes, got ${bytes.length}`);
}

/** Like verifyDeviceSignature, but a bad signature in published keys is bad input, not a failed login. */
function requireSigned(identityKey: Uint8Array, data: Uint8Array, signature: Uint8Array, field: string): void {
  requireSize(signature, ED25519_SIGNATURE_BYTES, `${field} signature`);
  try {
    verifyDeviceSignature(identityKey, data, signature);
  } catch {
    throw invalid(`${field} is not signed by the device's identity key`);
  }
}

export function toStock(counts: PreKeyCounts): PreKeyStock {
  return {
    oneTimePreKeys: counts.oneTimePreKeys,
    oneTimePqPreKeys: counts.oneTimePqPreKeys,
    lowWater: PREKEY_LOW_WATER,
    hasBundle: counts.hasBundle,
  };
}

export class DeviceKeys {
  private readonly deps: DeviceKeysDeps;

  constructor(deps: DeviceKeysDeps) {
    this.deps = deps;
  }

  async stock(deviceId: string): Promise<PreKeyStock> {
    return toStock(await this.deps.store.countPreKeys(deviceId));
  }

  async publish(deviceId: string, request: PublishPreKeysRequest): Promise<PreKeyStock> {
    const device = await this.deps.store.getDevice(deviceId);
    if (device === undefined)
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "device no longer exists");
    const key = device.identityKey;
    if (
      request.oneTimePreKeys.length > MAX_PREKEYS_PER_PUBLISH ||
      request.oneTimePqPreKeys.length > MAX_PREKEYS_PER_PUBLISH
    ) {
      throw invalid(`at most ${MAX_PREKEYS_PER_PUBLISH} one-time prekeys of each kind per request`);
    }
    let identityDh: PreKeyUpload["identityDh"];
    if (request.identityDhKey.length > 0) {
      requireSize(request.identityDhKey, X25519_PUBLIC_KEY_BYTES, "identity_dh_key");
      requireSigned(key, identityDhProof(request.identityDhKey), request.identityDhSignature, "identity_dh_key");
      identityDh = { publicKey: request.identityDhKey, signature: request.identityDhSignature };
    }
    let signedPreKey: StoredSignedPreKey | undefined;
    if (request.signedPreKey !== undefined) {
      const spk = request.signedPreKey;
      requireSize(spk.publicKey, X25519_PUBLIC_KEY_BYTES, "signed_pre_key.public_key");
      requireSigned(key, signedPreKeyProof(spk.keyId, spk.publicKey), spk.signature, "signed_pre_key");
      signedPreKey = { keyId: spk.keyId, publicKey: spk.publicKey, signature: spk.signature };
    }
    const pqChecked = (pq: StoredSignedPreKey, field: string): StoredSignedPreKey => {
      requireSize(pq.publicKey, ML_KEM_768_PUBLIC_KEY_BYTES, `${field}.public_key`);
      requireSigned(key, pqPreKeyProof(pq.keyId, pq.publicKey), pq.signature, field);
      return { keyId: pq.keyId, publicKey: pq.publicKey, signature: pq.signature };
    };
    const lastResort = request.lastResortPqPreKey;
    const upload: PreKeyUpload = {
      identityDh,
      signedPreKey,
      oneTimePreKeys: request.oneTimePreKeys.map((k) => {
        requireSize(k.publicKey, X25519_PUBLIC_KEY_BYTES, "one_time_pre_keys.public_key");
        return { keyId: k.keyId, publicKey: k.publicKey };
      }),
      lastResortPqPreKey: lastResort === undefined ? undefined : pqChecked(lastResort, "last_resort_pq_pre_key"),
      oneTimePqPreKeys: request.oneTimePqPreKeys.map((k) => pqChecked(k, "one_time_pq_pre_keys")),
    };
    const before = await this.deps.store.countPreKeys(deviceId);
    if (
      before.oneTimePreKeys + upload.oneTimePreKeys.length > MAX_STORED_PREKEYS ||
      before.oneTimePqPreKeys + upload.oneTimePqPreKeys.length > MAX_STORED_PREKEYS
    ) {
      throw invalid(`the server keeps at most ${MAX_STORED_PREKEYS} one-time prekeys of each kind per device`);
    }
    return toStock(await this.deps.store.publishPreKeys(deviceId, upload));
  }

  async takeBundles(request: GetPreKeyBundlesRequest): Promise<GetPreKeyBundlesResponse> {
    if (!isId("user", request.userId)) throw invalid(`user_id is not a user id: ${request.userId.slice(0, 40)}`);
    const devices = await this.deps.store.listUserDevices(request.userId);
    if (devices.length === 0) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `no user ${request.userId}`);
    const wanted = new Set(request.deviceIds);
    const bundles = [];
    for (const device of devices) {
      if (wanted.size > 0 && !wanted.has(device.deviceId)) continue;
      const taken = await this.deps.store.takePreKeyBundle(device.deviceId);
      if (taken === undefined) continue;
      bundles.push({
        userId: device.userId,
        deviceId: device.deviceId,
        identityKey: device.identityKey,
        identityDhKey: taken.identityDhKey,
        identityDhSignature: taken.identityDhSignature,
        signedPreKey: taken.signedPreKey,
        oneTimePreKey: taken.oneTimePreKey,
        pqPreKey: taken.pqPreKey,
        isPqLastResort: taken.isPqLastResort,
      });
    }
    return { bundles };
  }

  /** Adds the new device; returns its ids (the caller issues the session token). */
  async link(request: LinkDeviceRequest): Promise<{ userId: string; deviceId: string }> {
    const { store, clock, challenges } = this.deps;
    if (!isId("user", request.userId)) throw invalid("user_id is not a user id");
    if (!isId("device", request.approvedByDeviceId)) throw invalid("approved_by_device_id is not a device id");
    requireSize(request.identityKey, ED25519_PUBLIC_KEY_BYTES, "identity_key");
    challenges.consume(request.nonce);
    verifyDeviceSignature(
      request.identityKey,
      linkProof(request.nonce, request.identityKey, request.userId),
      request.signature,
    );
    const approver = await store.getDevice(request.approvedByDeviceId);
    if (approver?.userId !== request.userId) {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_PERMISSION_DENIED,
        "the approving device is not a device of this user",
      );
    }
    const now = clock.nowMs();
    if (request.approvalExpiresAtMs < now || request.approvalExpiresAtMs > now + MAX_LINK_APPROVAL_MS) {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_PERMISSION_DENIED,
        "the link approval has expired (or expires too late)",
      );
    }
    try {
      verifyDeviceSignature(
        approver.identityKey,
        linkApprovalProof(request.userId, request.identityKey, request.approvalExpiresAtMs),
        request.approvalSignature,
      );
    } catch {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_PERMISSION_DENIED,
        "the link approval is not signed by the approving device",
      );
    }
    const devices = await store.listUserDevices(request.userId);
    if (devices.length >= MAX_DEVICES_PER_USER) {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_PERMISSION_DENIED,
        `a user has at most ${MAX_DEVICES_PER_USER} devices`,
      );
    }
    if (devices.some((d) => equalBytes(d.identityKey, request.identityKey))) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, "this key is a device of the user already");
    }
    const deviceId = newId("device", this.deps.random);
    await store.addDevice({
      deviceId,
      userId: request.userId,
      identityKey: request.identityKey,
      createdAtMs: now,
      approval: {
        approvedByDeviceId: request.approvedByDeviceId,
        signature: request.approvalSignature,
        expiresAtMs: request.approvalExpiresAtMs,
      },
    });
    for (const chatId of await store.listUserChatIds(request.userId)) await store.addChatCursor(chatId, deviceId);
    return { userId: request.userId, deviceId };
  }
}
