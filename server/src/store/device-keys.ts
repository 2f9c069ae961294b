/**
 * The part of the Store port that keeps devices' public key material for
 * end-to-end encryption (docs/e2e.md): prekey bundles, one-time prekeys handed
 * out once, and devices linked to an existing user. Every Store adapter
 * implements it (store.ts extends it) and the shared contract suite covers it.
 *
 * Invariants every adapter keeps:
 * - Each one-time prekey (X25519 or PQ) is returned by at most one
 *   takePreKeyBundle call, also when many run at once: the claim and the
 *   removal are one atomic step per device.
 * - Publishing a one-time key id the device holds already changes nothing.
 * - A device has a bundle once it published an identity DH key, a signed
 *   prekey and a last-resort PQ prekey; until then takePreKeyBundle returns
 *   undefined and claims nothing.
 */

export interface StoredSignedPreKey {
  keyId: number;
  publicKey: Uint8Array;
  signature: Uint8Array;
}

export interface StoredOneTimePreKey {
  keyId: number;
  publicKey: Uint8Array;
}

/** What a device publishes; absent fields keep what is stored. */
export interface PreKeyUpload {
  identityDh: { publicKey: Uint8Array; signature: Uint8Array } | undefined;
  signedPreKey: StoredSignedPreKey | undefined;
  oneTimePreKeys: StoredOneTimePreKey[];
  lastResortPqPreKey: StoredSignedPreKey | undefined;
  oneTimePqPreKeys: StoredSignedPreKey[];
}

export interface PreKeyCounts {
  oneTimePreKeys: number;
  oneTimePqPreKeys: number;
  hasBundle: boolean;
}

/** One device's bundle, with its one-time keys claimed for the caller. */
export interface TakenBundle {
  identityDhKey: Uint8Array;
  identityDhSignature: Uint8Array;
  signedPreKey: StoredSignedPreKey;
  /** Undefined when the stock of one-time X25519 prekeys is empty. */
  oneTimePreKey: StoredOneTimePreKey | undefined;
  /** A one-time PQ prekey while any is left, else the last-resort one. */
  pqPreKey: StoredSignedPreKey;
  isPqLastResort: boolean;
}

/** How a linked device was approved by an existing device of its user. */
export interface DeviceApproval {
  approvedByDeviceId: string;
  signature: Uint8Array;
  expiresAtMs: number;
}

export interface LinkedDevice {
  deviceId: string;
  userId: string;
  identityKey: Uint8Array;
  createdAtMs: number;
  approval: DeviceApproval;
}

export interface DeviceKeyStore {
  /** Stores what the device published and returns its stock afterwards. */
  publishPreKeys(deviceId: string, upload: PreKeyUpload): Promise<PreKeyCounts>;
  /** Claims one bundle of the device (see the invariants); undefined without a complete bundle. */
  takePreKeyBundle(deviceId: string): Promise<TakenBundle | undefined>;
  countPreKeys(deviceId: string): Promise<PreKeyCounts>;

  /**
   * Adds a device to an existing user. Rejects with ALREADY_EXISTS when the
   * device id is taken, NOT_FOUND when the user does not exist.
   */
  addDevice(device: LinkedDevice): Promise<void>;
  getDeviceApproval(deviceId: string): Promise<DeviceApproval | undefined>;
  /**
   * Gives the device a cursor at the chat's head (it receives what comes
   * next), unless it has one. False when the chat does not exist.
   */
  addChatCursor(chatId: string, deviceId: string): Promise<boolean>;
}
