/**
 * RedisStore's device-key part (the DeviceKeyStore port): prekey bundles,
 * one-time prekeys, linked devices. Kept apart from redis-store.ts, which
 * delegates here, because it shares nothing with the chat hot path.
 *
 * Key layout (beside redis-store.ts's, every key under the client's prefix):
 *   {device:ID}:bundle    hash   dh, dhsig, spk (SignedPreKey), lastresort (PqPreKey)
 *   {device:ID}:otpk      zset   encoded OneTimePreKey, score = key id
 *   {device:ID}:otpq      zset   encoded PqPreKey, score = key id
 *   {device:ID}:approval  string JSON of the link approval
 * and redis-store.ts's {device:ID}:owner, {user:ID}:record, {user:ID}:devices,
 * {chat:ID}:meta, {chat:ID}:cursors.
 *
 * A device's prekey keys share the hash tag {device:ID}: publishing and
 * claiming are each one Lua script on one slot, so a one-time key is popped
 * by exactly one caller.
 */
import { readFileSync } from "node:fs";
import { RemessengerError, ErrorCode, OneTimePreKey, PqPreKey, SignedPreKey } from "@remessenger/protocol";
import type {
  DeviceApproval,
  LinkedDevice,
  PreKeyCounts,
  PreKeyUpload,
  StoredSignedPreKey,
  TakenBundle,
} from "./device-keys.ts";
import type { RedisClient } from "./redis-connection.ts";

const keys = {
  bundle: (deviceId: string) => `{device:${deviceId}}:bundle`,
  oneTime: (deviceId: string) => `{device:${deviceId}}:otpk`,
  oneTimePq: (deviceId: string) => `{device:${deviceId}}:otpq`,
  approval: (deviceId: string) => `{device:${deviceId}}:approval`,
  deviceOwner: (deviceId: string) => `{device:${deviceId}}:owner`,
  userRecord: (userId: string) => `{user:${userId}}:record`,
  userDevices: (userId: string) => `{user:${userId}}:devices`,
  chatMeta: (chatId: string) => `{chat:${chatId}}:meta`,
  chatCursors: (chatId: string) => `{chat:${chatId}}:cursors`,
};

interface Script {
  name: string;
  lua: string;
  numberOfKeys: number;
}

function script(name: string, file: string): Script {
  return {
    name,
    lua: readFileSync(new URL(`./lua/${file}.lua`, import.meta.url), "utf8"),
    numberOfKeys: Number(file.slice(file.lastIndexOf("-") + 1)),
  };
}

const SCRIPTS = {
  publish: script("publishPreKeys", "publish-prekeys-3"),
  take: script("takePreKeyBundle", "take-prekey-bundle-3"),
  addChatCursor: script("addChatCursor", "add-chat-cursor-2"),
};

type Arg = string | Buffer | number;

/**
 * Defines the scripts on the client; run before its first command (RedisStore's
 * prepare step). Defined later, a script called in the same event-loop turn as
 * an auto-pipelined command fails ("pipeline[functionName] is not a function",
 * ioredis #1931) and can misalign the replies of that whole pipeline.
 */
export function defineDeviceKeyScripts(client: RedisClient): void {
  for (const s of Object.values(SCRIPTS)) client.defineCommand(s.name, { lua: s.lua, numberOfKeys: s.numberOfKeys });
}

export class RedisDeviceKeys {
  private readonly client: RedisClient;

  constructor(client: RedisClient) {
    this.client = client;
  }

  async publishPreKeys(deviceId: string, upload: PreKeyUpload): Promise<PreKeyCounts> {
    const args: Arg[] = [
      upload.identityDh === undefined ? "" : view(upload.identityDh.publicKey),
      upload.identityDh === undefined ? "" : view(upload.identityDh.signature),
      upload.signedPreKey === undefined ? "" : view(SignedPreKey.encode(upload.signedPreKey).finish()),
      upload.lastResortPqPreKey === undefined ? "" : view(PqPreKey.encode(upload.lastResortPqPreKey).finish()),
      upload.oneTimePreKeys.length,
    ];
    for (const key of upload.oneTimePreKeys) args.push(key.keyId, view(OneTimePreKey.encode(key).finish()));
    for (const key of upload.oneTimePqPreKeys) args.push(key.keyId, view(PqPreKey.encode(key).finish()));
    const reply = await this.run(
      SCRIPTS.publish,
      [keys.bundle(deviceId), keys.oneTime(deviceId), keys.oneTimePq(deviceId)],
      args,
      false,
    );
    return toCounts(reply);
  }

  async takePreKeyBundle(deviceId: string): Promise<TakenBundle | undefined> {
    const reply = await this.run(
      SCRIPTS.take,
      [keys.bundle(deviceId), keys.oneTime(deviceId), keys.oneTimePq(deviceId)],
      [],
      true,
    );
    if (reply === null) return undefined;
    if (!Array.isArray(reply) || reply.length !== 6 || !reply.every((part) => part instanceof Buffer)) {
      throw unexpected("takePreKeyBundle", reply);
    }
    const [dh, dhSignature, spk, lastResort, oneTime, pq] = (reply as Buffer[]).map(toBytes);
    const signedPreKey = SignedPreKey.decode(spk ?? new Uint8Array(0));
    const oneTimeKey = oneTime !== undefined && oneTime.length > 0 ? OneTimePreKey.decode(oneTime) : undefined;
    const pqKey = pq !== undefined && pq.length > 0 ? PqPreKey.decode(pq) : undefined;
    return {
      identityDhKey: dh ?? new Uint8Array(0),
      identityDhSignature: dhSignature ?? new Uint8Array(0),
      signedPreKey: signed(signedPreKey),
      oneTimePreKey:
        oneTimeKey === undefined ? undefined : { keyId: oneTimeKey.keyId, publicKey: oneTimeKey.publicKey },
      pqPreKey: signed(pqKey ?? PqPreKey.decode(lastResort ?? new Uint8Array(0))),
      isPqLastResort: pqKey === undefined,
    };
  }

  async countPreKeys(deviceId: string): Promise<PreKeyCounts> {
    const [oneTime, oneTimePq, fields] = await Promise.all([
      this.client.zcard(keys.oneTime(deviceId)),
      this.client.zcard(keys.oneTimePq(deviceId)),
      this.client.hmget(keys.bundle(deviceId), "dh", "spk", "lastresort"),
    ]);
    return { oneTimePreKeys: oneTime, oneTimePqPreKeys: oneTimePq, hasBundle: fields.every((f) => f !== null) };
  }

  /** Approval first, then the device id claim, then the user's device list (see redis-store.ts's createUser). */
  async addDevice(device: LinkedDevice): Promise<void> {
    if ((await this.client.exists(keys.userRecord(device.userId))) === 0) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `no user ${device.userId}`);
    }
    const owner = await this.client.set(keys.deviceOwner(device.deviceId), device.userId, "NX", "GET");
    if (owner !== null && owner !== device.userId) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, `device ${device.deviceId} exists`);
    }
    if ((await this.client.hexists(keys.userDevices(device.userId), device.deviceId)) === 1) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, `device ${device.deviceId} exists`);
    }
    await this.client.set(
      keys.approval(device.deviceId),
      JSON.stringify({
        approvedByDeviceId: device.approval.approvedByDeviceId,
        signature: Buffer.from(device.approval.signature).toString("base64"),
        expiresAtMs: device.approval.expiresAtMs,
      }),
    );
    // The same JSON as redis-store.ts's deviceToJson, which parseDevice reads.
    await this.client.hset(
      keys.userDevices(device.userId),
      device.deviceId,
      JSON.stringify({
        deviceId: device.deviceId,
        userId: device.userId,
        identityKey: Buffer.from(device.identityKey).toString("base64"),
        createdAtMs: device.createdAtMs,
      }),
    );
  }

  async getDeviceApproval(deviceId: string): Promise<DeviceApproval | undefined> {
    const json = await this.client.get(keys.approval(deviceId));
    if (json === null) return undefined;
    const value = JSON.parse(json) as { approvedByDeviceId?: unknown; signature?: unknown; expiresAtMs?: unknown };
    if (
      typeof value.approvedByDeviceId !== "string" ||
      typeof value.signature !== "string" ||
      typeof value.expiresAtMs !== "number"
    ) {
      throw new Error(`stored approval of ${deviceId} is malformed`);
    }
    return {
      approvedByDeviceId: value.approvedByDeviceId,
      signature: new Uint8Array(Buffer.from(value.signature, "base64")),
      expiresAtMs: value.expiresAtMs,
    };
  }

  async addChatCursor(chatId: string, deviceId: string): Promise<boolean> {
    const reply = await this.run(
      SCRIPTS.addChatCursor,
      [keys.chatMeta(chatId), keys.chatCursors(chatId)],
      [deviceId],
      false,
    );
    return reply === 1;
  }

  /** The script as the command defineDeviceKeyScripts made of it (EVALSHA with an EVAL fallback, keys prefixed). */
  private async run(s: Script, scriptKeys: string[], args: Arg[], isBinary: boolean): Promise<unknown> {
    const commands = this.client as unknown as Record<string, ((...a: Arg[]) => Promise<unknown>) | undefined>;
    const command = commands[isBinary ? `${s.name}Buffer` : s.name];
    if (command === undefined)
      throw new Error(`${s.name} is not defined: defineDeviceKeyScripts runs before the first command`);
    return command.call(this.client, ...scriptKeys, ...args);
  }
}

function signed(key: { keyId: number; publicKey: Uint8Array; signature: Uint8Array }): StoredSignedPreKey {
  return { keyId: key.keyId, publicKey: key.publicKey, signature: key.signature };
}

function toCounts(reply: unknown): PreKeyCounts {
  if (!Array.isArray(reply) || reply.length !== 3 || !reply.every((n) => typeof n === "number")) {
    throw unexpected("publishPreKeys", reply);
  }
  const [oneTime, oneTimePq, hasBundle] = reply;
  return { oneTimePreKeys: oneTime ?? 0, oneTimePqPreKeys: oneTimePq ?? 0, hasBundle: hasBundle === 1 };
}

function unexpected(what: string, reply: unknown): Error {
  return new Error(`unexpected reply from ${what}: ${JSON.stringify(reply)}`);
}

function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function toBytes(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}
