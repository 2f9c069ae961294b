/**
 * The embedded store's device-key tables (schema version 2): prekey bundles,
 * one-time prekeys and linked devices. Writes run on the writer connection
 * inside its group-commit transaction (SqliteDeviceKeyWriter, called by
 * SqliteWriter), so claiming a one-time prekey — select the lowest id, delete
 * it — is atomic: one writer, one transaction. Reads run on any connection.
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { RemessengerError, ErrorCode } from "@remessenger/protocol";
import type {
  DeviceApproval,
  LinkedDevice,
  PreKeyCounts,
  PreKeyUpload,
  StoredSignedPreKey,
  TakenBundle,
} from "./device-keys.ts";
import { blobColumn, integerColumn, textColumn, type Row } from "./sqlite-rows.ts";

/** The migration that adds these tables (appended to sqlite-schema.ts's list). */
export const DEVICE_KEYS_MIGRATION = `
  ALTER TABLE devices ADD COLUMN approved_by_device_id TEXT;
  ALTER TABLE devices ADD COLUMN approval_signature BLOB;
  ALTER TABLE devices ADD COLUMN approval_expires_at_ms INTEGER;
  CREATE TABLE device_bundles (
    device_id TEXT PRIMARY KEY,
    identity_dh_key BLOB,
    identity_dh_signature BLOB,
    signed_prekey_id INTEGER,
    signed_prekey BLOB,
    signed_prekey_signature BLOB,
    pq_last_resort_id INTEGER,
    pq_last_resort BLOB,
    pq_last_resort_signature BLOB
  ) WITHOUT ROWID;
  CREATE TABLE one_time_prekeys (
    device_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    signature BLOB,
    PRIMARY KEY (device_id, kind, key_id)
  ) WITHOUT ROWID;
`;

const KIND_X25519 = 0;
const KIND_PQ = 1;

export class SqliteDeviceKeyReader {
  private readonly selectCount: StatementSync;
  private readonly selectBundle: StatementSync;
  private readonly selectApproval: StatementSync;

  constructor(db: DatabaseSync) {
    this.selectCount = db.prepare("SELECT kind, COUNT(*) AS n FROM one_time_prekeys WHERE device_id = ? GROUP BY kind");
    this.selectBundle = db.prepare("SELECT * FROM device_bundles WHERE device_id = ?");
    this.selectApproval = db.prepare(
      "SELECT approved_by_device_id, approval_signature, approval_expires_at_ms FROM devices WHERE device_id = ?",
    );
  }

  countPreKeys(deviceId: string): PreKeyCounts {
    const counts = new Map(
      this.selectCount.all(deviceId).map((r) => [integerColumn(r, "kind"), integerColumn(r, "n")]),
    );
    return {
      oneTimePreKeys: counts.get(KIND_X25519) ?? 0,
      oneTimePqPreKeys: counts.get(KIND_PQ) ?? 0,
      hasBundle: completeBundle(this.selectBundle.get(deviceId)) !== undefined,
    };
  }

  bundleRow(deviceId: string): CompleteBundle | undefined {
    return completeBundle(this.selectBundle.get(deviceId));
  }

  getDeviceApproval(deviceId: string): DeviceApproval | undefined {
    const row = this.selectApproval.get(deviceId);
    if (row === undefined || row["approved_by_device_id"] === null) return undefined;
    return {
      approvedByDeviceId: textColumn(row, "approved_by_device_id"),
      signature: blobColumn(row, "approval_signature"),
      expiresAtMs: integerColumn(row, "approval_expires_at_ms"),
    };
  }
}

type CompleteBundle = Omit<TakenBundle, "oneTimePreKey" | "pqPreKey" | "isPqLastResort"> & {
  lastResort: StoredSignedPreKey;
};

function completeBundle(row: Row | undefined): CompleteBundle | undefined {
  if (row === undefined) return undefined;
  if (row["identity_dh_key"] === null || row["signed_prekey"] === null || row["pq_last_resort"] === null)
    return undefined;
  return {
    identityDhKey: blobColumn(row, "identity_dh_key"),
    identityDhSignature: blobColumn(row, "identity_dh_signature"),
    signedPreKey: {
      keyId: integerColumn(row, "signed_prekey_id"),
      publicKey: blobColumn(row, "signed_prekey"),
      signature: blobColumn(row, "signed_prekey_signature"),
    },
    lastResort: {
      keyId: integerColumn(row, "pq_last_resort_id"),
      publicKey: blobColumn(row, "pq_last_resort"),
      signature: blobColumn(row, "pq_last_resort_signature"),
    },
  };
}

export class SqliteDeviceKeyWriter {
  private readonly reader: SqliteDeviceKeyReader;
  private readonly ensureBundle: StatementSync;
  private readonly updateIdentityDh: StatementSync;
  private readonly updateSignedPreKey: StatementSync;
  private readonly updateLastResort: StatementSync;
  private readonly insertOneTime: StatementSync;
  private readonly selectFirstOneTime: StatementSync;
  private readonly deleteOneTime: StatementSync;
  private readonly selectUser: StatementSync;
  private readonly selectDevice: StatementSync;
  private readonly insertDevice: StatementSync;
  private readonly insertCursorAtHead: StatementSync;
  private readonly selectChat: StatementSync;

  constructor(db: DatabaseSync) {
    this.reader = new SqliteDeviceKeyReader(db);
    this.ensureBundle = db.prepare("INSERT INTO device_bundles (device_id) VALUES (?) ON CONFLICT DO NOTHING");
    this.updateIdentityDh = db.prepare(
      "UPDATE device_bundles SET identity_dh_key = ?, identity_dh_signature = ? WHERE device_id = ?",
    );
    this.updateSignedPreKey = db.prepare(
      "UPDATE device_bundles SET signed_prekey_id = ?, signed_prekey = ?, signed_prekey_signature = ? WHERE device_id = ?",
    );
    this.updateLastResort = db.prepare(
      "UPDATE device_bundles SET pq_last_resort_id = ?, pq_last_resort = ?, pq_last_resort_signature = ? WHERE device_id = ?",
    );
    this.insertOneTime = db.prepare(
      `INSERT INTO one_time_prekeys (device_id, kind, key_id, public_key, signature) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT DO NOTHING`,
    );
    this.selectFirstOneTime = db.prepare(
      "SELECT key_id, public_key, signature FROM one_time_prekeys WHERE device_id = ? AND kind = ? ORDER BY key_id LIMIT 1",
    );
    this.deleteOneTime = db.prepare("DELETE FROM one_time_prekeys WHERE device_id = ? AND kind = ? AND key_id = ?");
    this.selectUser = db.prepare("SELECT 1 FROM users WHERE user_id = ?");
    this.selectDevice = db.prepare("SELECT 1 FROM devices WHERE device_id = ?");
    this.insertDevice = db.prepare(
      `INSERT INTO devices (device_id, user_id, identity_key, created_at_ms,
         approved_by_device_id, approval_signature, approval_expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    this.selectChat = db.prepare("SELECT chat_key, head_seq FROM chats WHERE chat_id = ?");
    this.insertCursorAtHead = db.prepare(
      "INSERT INTO cursors (chat_key, device_id, through_seq) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    );
  }

  publishPreKeys(deviceId: string, upload: PreKeyUpload): PreKeyCounts {
    this.ensureBundle.run(deviceId);
    if (upload.identityDh !== undefined) {
      this.updateIdentityDh.run(upload.identityDh.publicKey, upload.identityDh.signature, deviceId);
    }
    const spk = upload.signedPreKey;
    if (spk !== undefined) this.updateSignedPreKey.run(spk.keyId, spk.publicKey, spk.signature, deviceId);
    const lastResort = upload.lastResortPqPreKey;
    if (lastResort !== undefined) {
      this.updateLastResort.run(lastResort.keyId, lastResort.publicKey, lastResort.signature, deviceId);
    }
    for (const key of upload.oneTimePreKeys)
      this.insertOneTime.run(deviceId, KIND_X25519, key.keyId, key.publicKey, null);
    for (const key of upload.oneTimePqPreKeys) {
      this.insertOneTime.run(deviceId, KIND_PQ, key.keyId, key.publicKey, key.signature);
    }
    return this.reader.countPreKeys(deviceId);
  }

  takePreKeyBundle(deviceId: string): TakenBundle | undefined {
    const base = this.reader.bundleRow(deviceId);
    if (base === undefined) return undefined;
    const oneTime = this.claim(deviceId, KIND_X25519);
    const pq = this.claim(deviceId, KIND_PQ);
    return {
      identityDhKey: base.identityDhKey,
      identityDhSignature: base.identityDhSignature,
      signedPreKey: base.signedPreKey,
      oneTimePreKey: oneTime === undefined ? undefined : { keyId: oneTime.keyId, publicKey: oneTime.publicKey },
      pqPreKey: pq ?? base.lastResort,
      isPqLastResort: pq === undefined,
    };
  }

  addDevice(device: LinkedDevice): void {
    if (this.selectUser.get(device.userId) === undefined) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `no user ${device.userId}`);
    }
    if (this.selectDevice.get(device.deviceId) !== undefined) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, `device ${device.deviceId} exists`);
    }
    this.insertDevice.run(
      device.deviceId,
      device.userId,
      device.identityKey,
      device.createdAtMs,
      device.approval.approvedByDeviceId,
      device.approval.signature,
      device.approval.expiresAtMs,
    );
  }

  addChatCursor(chatId: string, deviceId: string): boolean {
    const chat = this.selectChat.get(chatId);
    if (chat === undefined) return false;
    this.insertCursorAtHead.run(integerColumn(chat, "chat_key"), deviceId, integerColumn(chat, "head_seq"));
    return true;
  }

  private claim(deviceId: string, kind: number): StoredSignedPreKey | undefined {
    const row = this.selectFirstOneTime.get(deviceId, kind);
    if (row === undefined) return undefined;
    const keyId = integerColumn(row, "key_id");
    this.deleteOneTime.run(deviceId, kind, keyId);
    const signature = row["signature"];
    return {
      keyId,
      publicKey: blobColumn(row, "public_key"),
      signature: signature instanceof Uint8Array ? signature : new Uint8Array(0),
    };
  }
}
