/**
 * RedisStore: the Store on one Redis (a Cluster adapter follows; this one is
 * already laid out for it).
 *
 * Key layout (every key starts with `keyPrefix`):
 *   {chat:ID}:meta      hash   record (JSON), head, trimmed (highest seq deleted),
 *                              kind (also in the record; absent in chats made before it),
 *                              ophash (hex), opseq: a group's chain head
 *   {chat:ID}:ids       hash   message id -> "seq:firstSenderDeviceId", never trimmed
 *   {chat:ID}:messages  hash   seq -> protobuf Message without chatId/seq
 *   {chat:ID}:cursors   zset   device id, score = throughSeq
 *   {chat:ID}:ops       hash   seq -> a group operation's message body, never trimmed
 *   {chat:ID}:departed  hash   removed device id -> "untilSeq" or "untilSeq:resumeSeq",
 *                              while the device is owed entries through its removal
 *   {user:ID}:record    string JSON
 *   {user:ID}:devices   hash   device id -> JSON
 *   {user:ID}:chats     set    chat ids
 *   {device:ID}:owner   string user id
 *   {device:ID}:departed set   ids of groups the device may still be owed entries of
 *                              (a superset: stale entries are dropped when listed)
 *   server:secret       string
 *
 * All of a chat's keys share the hash tag {chat:ID}, so each atomic step on a
 * chat (append, ack + trim, create, read) is one Lua script on one slot (see
 * lua/, one file per script named for its key count). No command or script
 * touches two tags. The two steps that span tags are ordered so that a crash
 * between them is harmless, and repeating them is idempotent:
 *   - createChat: create the chat, then list it under each member (done on
 *     every call, so a retry repairs a listing a crash left out);
 *   - createUser: claim the device id, then write the user and its device (a
 *     claimed id whose user does not list the device reads as no device);
 *   - a group removal: list the group under each removed device, then apply
 *     it (an entry without a departure in the chat reads as nothing).
 *
 * The same code runs on one Redis and on a Redis Cluster (ioredis Cluster):
 * every script touches one hash tag, so it runs on one slot.
 *
 * Group commit: appends submitted in the same event-loop turn, or while the
 * previous batch is in flight, are issued together in one tick, so ioredis
 * auto-pipelining carries them to Redis in one round trip (per node, in a
 * Cluster). Durable on resolve means Redis executed the script and, when
 * `waitReplicas` > 0, that many replicas acknowledged it: after a batch's
 * appends, each master that served them gets one `WAIT waitReplicas timeout`
 * on the same connection, so a master that dies after the ack has a replica
 * with the message to promote.
 * Across a crash of every copy, durability is Redis' own setting (appendonly,
 * appendfsync). docs/cluster.md has the rule and its measured cost.
 *
 * Fencing: appends carry the writer's shard lease token (AppendOptions); the
 * append script refuses a token below the chat's stored one (FencedError).
 */
import { readFile } from "node:fs/promises";
import type { Redis } from "ioredis";
import { RemessengerError, ChatKind, ErrorCode, type Message } from "@remessenger/protocol";
import { GroupCommit, type GroupCommitStats, type Settlement } from "./group-commit.ts";
import { decodeMessageBody, encodeMessageBody } from "./message-body.ts";
import {
  type RedisClient,
  type RedisTarget,
  attachedReplicas,
  connectRedis,
  connectionTo,
  masterOf,
} from "./redis-connection.ts";
import { RedisDeviceKeys, defineDeviceKeyScripts } from "./redis-device-keys.ts";
import { defineLeaseScripts } from "./redis-lease-store.ts";
import type { DeviceApproval, LinkedDevice, PreKeyCounts, PreKeyUpload, TakenBundle } from "./device-keys.ts";
import {
  type AppendOptions,
  type AppendOutcome,
  type ChatRecord,
  type ChatHead,
  type ChatState,
  type DeliveryCursor,
  type DeviceAck,
  type DeviceCursor,
  type DeviceRecord,
  FencedError,
  type GroupChange,
  type MessageDraft,
  type Store,
  type UserRecord,
} from "./store.ts";

export type RedisStoreOptions = RedisTarget & RedisStoreSettings;

export interface RedisStoreSettings {
  /**
   * Replicas that must acknowledge an append before it resolves (WAIT). Default
   * 0: one Redis, whose own persistence settings then decide durability.
   */
  waitReplicas?: number;
  /** How long WAIT may take before the append fails with UNAVAILABLE. Default 1,000 ms. */
  waitTimeoutMs?: number;
  /**
   * When a master has fewer replicas attached than `waitReplicas` (after a
   * failover, until the old master rejoins as a replica): false (default)
   * acks on the replicas it has, down to the master alone, and counts it in
   * `degradedAcks`; true refuses such appends with UNAVAILABLE.
   */
  isReplicaRequired?: boolean;
  /** Prepended to every key, so stores (and tests) sharing a Redis never collide. Must not contain braces. Default "remessenger:". */
  keyPrefix?: string;
  /** Messages one pipelined batch of appends carries at most. Default 5,000. */
  maxBatchMessages?: number;
  /** Messages queued for Redis beyond which appends are refused with UNAVAILABLE. Default 200,000. */
  maxPendingMessages?: number;
  /**
   * Told about each connection error while ioredis reconnects (for the log).
   * Commands caught by an outage fail on their own once retries run out.
   */
  onConnectionError?: (error: Error) => void;
}

const DEFAULT_KEY_PREFIX = "remessenger:";
const DEFAULT_MAX_BATCH_MESSAGES = 5_000;
const DEFAULT_MAX_PENDING_MESSAGES = 200_000;
const DEFAULT_WAIT_TIMEOUT_MS = 1_000;
const REPLICA_COUNT_TTL_MS = 1_000;

/** Each script is lua/<name>-<number of keys>.lua; the client method is the camel-cased name. */
const SCRIPTS = {
  appendMessages: "append-messages-4",
  ackDeliveredMany: "ack-delivered-many-4",
  createChat: "create-chat-2",
  createUser: "create-user-2",
  readMessages: "read-messages-2",
  applyGroupOperation: "apply-group-operation-6",
  readDeliveryCursor: "read-delivery-cursor-2",
  readGroupOperations: "read-group-operations-1",
} as const;

type ScriptArg = string | Buffer | number;
type ScriptCommand = (...args: ScriptArg[]) => Promise<unknown>;
type StoreClient = RedisClient & { [Name in keyof typeof SCRIPTS]: ScriptCommand } & {
  [Name in keyof typeof SCRIPTS as `${Name}Buffer`]: ScriptCommand;
};

interface AppendOp {
  chatId: string;
  /** The script's ARGV: the fencing token, then messageId, senderDeviceId, body per draft. */
  args: ScriptArg[];
  draftCount: number;
}

const keys = {
  chatMeta: (chatId: string) => `{chat:${chatId}}:meta`,
  chatIds: (chatId: string) => `{chat:${chatId}}:ids`,
  chatMessages: (chatId: string) => `{chat:${chatId}}:messages`,
  chatCursors: (chatId: string) => `{chat:${chatId}}:cursors`,
  chatOperations: (chatId: string) => `{chat:${chatId}}:ops`,
  chatDepartures: (chatId: string) => `{chat:${chatId}}:departed`,
  userRecord: (userId: string) => `{user:${userId}}:record`,
  userDevices: (userId: string) => `{user:${userId}}:devices`,
  userChats: (userId: string) => `{user:${userId}}:chats`,
  deviceOwner: (deviceId: string) => `{device:${deviceId}}:owner`,
  deviceDepartures: (deviceId: string) => `{device:${deviceId}}:departed`,
  serverSecret: () => "server:secret",
};

export class RedisStore implements Store {
  private readonly client: StoreClient;
  private readonly appends: GroupCommit<AppendOp>;
  private readonly waitReplicas: number;
  private readonly waitTimeoutMs: number;
  private readonly isReplicaRequired: boolean;
  private degradedAckCount = 0;
  private readonly replicaCounts = new Map<string, { count: number; atMs: number }>();
  private closing: Promise<void> | undefined;

  /** Connects, loads the Lua scripts, and fails fast when Redis is unreachable. */
  static async open(options: RedisStoreOptions): Promise<RedisStore> {
    const client = await connectRedis(options, {
      keyPrefix: options.keyPrefix ?? DEFAULT_KEY_PREFIX,
      ...(options.onConnectionError ? { onConnectionError: options.onConnectionError } : {}),
      prepare: defineScripts,
    });
    return new RedisStore(client as StoreClient, options);
  }

  private constructor(client: StoreClient, options: RedisStoreSettings) {
    this.client = client;
    this.waitReplicas = options.waitReplicas ?? 0;
    this.waitTimeoutMs = options.waitTimeoutMs ?? DEFAULT_WAIT_TIMEOUT_MS;
    this.isReplicaRequired = options.isReplicaRequired ?? false;
    this.appends = new GroupCommit<AppendOp>({
      commit: (ops) => this.commitAppends(ops),
      weigh: (op) => op.draftCount,
      maxBatchWeight: options.maxBatchMessages ?? DEFAULT_MAX_BATCH_MESSAGES,
      maxPendingWeight: options.maxPendingMessages ?? DEFAULT_MAX_PENDING_MESSAGES,
    });
  }

  /** The connection, for the other Redis adapters of the same node (leases, push bus). */
  get redis(): RedisClient {
    return this.client;
  }

  /** Group-commit counters: `commits` pipelined batches carried `ops` appendMessages calls. */
  get stats(): GroupCommitStats {
    return { ...this.appends.stats };
  }

  /** Appends acked with fewer replicas than `waitReplicas` because their master had no more. */
  get degradedAcks(): number {
    return this.degradedAckCount;
  }

  async loadOrCreateServerSecret(candidate: Uint8Array): Promise<Uint8Array> {
    const existing = await this.client.setBuffer(keys.serverSecret(), bufferView(candidate), "NX", "GET");
    return existing === null ? candidate : toUint8Array(existing);
  }

  async createUser(user: UserRecord, device: DeviceRecord): Promise<void> {
    const owner = await this.client.set(keys.deviceOwner(device.deviceId), user.userId, "NX", "GET");
    if (owner !== null && owner !== user.userId) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, `device ${device.deviceId} exists`);
    }
    const stored = await this.client.createUser(
      keys.userRecord(user.userId),
      keys.userDevices(user.userId),
      JSON.stringify(userToJson(user)),
      device.deviceId,
      JSON.stringify(deviceToJson({ ...device, userId: user.userId })),
    );
    if (stored !== 1) throw new RemessengerError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, `user ${user.userId} exists`);
  }

  async getUser(userId: string): Promise<UserRecord | undefined> {
    const json = await this.client.get(keys.userRecord(userId));
    return json === null ? undefined : parseUser(json);
  }

  async getDevice(deviceId: string): Promise<DeviceRecord | undefined> {
    const userId = await this.client.get(keys.deviceOwner(deviceId));
    if (userId === null) return undefined;
    const json = await this.client.hget(keys.userDevices(userId), deviceId);
    return json === null ? undefined : parseDevice(json);
  }

  async listUserDevices(userId: string): Promise<DeviceRecord[]> {
    const devices = (await this.client.hvals(keys.userDevices(userId))).map(parseDevice);
    return devices.sort((a, b) => a.createdAtMs - b.createdAtMs || compareText(a.deviceId, b.deviceId));
  }

  async createChat(
    chat: ChatRecord,
    memberDeviceIds: readonly string[],
  ): Promise<{ chat: ChatState; created: boolean }> {
    const reply = await this.client.createChat(
      keys.chatMeta(chat.chatId),
      keys.chatCursors(chat.chatId),
      JSON.stringify(chatToJson(chat)),
      chat.kind,
      ...memberDeviceIds,
    );
    if (!Array.isArray(reply) || reply.length !== 3) throw unexpectedReply("createChat", reply);
    const [created, json, head] = reply as unknown[];
    if (typeof json !== "string" || typeof head !== "number") throw unexpectedReply("createChat", reply);
    const stored = parseChat(json);
    // After the chat exists, and on every call: see the module header.
    await Promise.all(stored.memberUserIds.map((userId) => this.client.sadd(keys.userChats(userId), stored.chatId)));
    if (stored.kind !== ChatKind.CHAT_KIND_GROUP) return { chat: { ...stored, headSeq: head }, created: created === 1 };
    // A group's chain head lives beside the record: read it as getChat does (groups are created rarely).
    const group = await this.getChat(stored.chatId);
    if (group === undefined) throw unexpectedReply("createChat", reply);
    return { chat: group, created: created === 1 };
  }

  async getChat(chatId: string): Promise<ChatState | undefined> {
    const [json, head, opHash, opSeq] = await this.client.hmget(
      keys.chatMeta(chatId),
      "record",
      "head",
      "ophash",
      "opseq",
    );
    if (json === null || json === undefined) return undefined;
    const chat: ChatState = { ...parseChat(json), headSeq: Number(head) };
    if (chat.kind !== ChatKind.CHAT_KIND_GROUP) return chat;
    return {
      ...chat,
      lastOperationHash: new Uint8Array(Buffer.from(opHash ?? "", "hex")),
      lastOperationSeq: Number(opSeq ?? 0),
    };
  }

  async getChatHead(chatId: string): Promise<ChatHead | undefined> {
    const [kind, head] = await this.client.hmget(keys.chatMeta(chatId), "kind", "head");
    if (head === null || head === undefined) return undefined;
    if (kind !== null && kind !== undefined) return { kind: Number(kind) as ChatKind, headSeq: Number(head) };
    // A chat stored before `kind` had its own field: the record has it.
    const chat = await this.getChat(chatId);
    return chat === undefined ? undefined : { kind: chat.kind, headSeq: chat.headSeq };
  }

  listUserChatIds(userId: string): Promise<string[]> {
    return this.client.smembers(keys.userChats(userId));
  }

  async appendMessages(
    chatId: string,
    drafts: readonly MessageDraft[],
    options: AppendOptions = {},
  ): Promise<AppendOutcome[]> {
    if (drafts.length === 0) return [];
    // Encoding here, not in commitAppends, keeps the batch's issuing loop tight.
    const args: ScriptArg[] = [options.fenceToken ?? 0];
    for (const draft of drafts) {
      args.push(bufferView(draft.messageId), draft.senderDeviceId, bufferView(encodeMessageBody(draft)));
    }
    return (await this.appends.submit({ chatId, args, draftCount: drafts.length })) as AppendOutcome[];
  }

  async readMessages(chatId: string, afterSeq: number, limit: number): Promise<Message[]> {
    if (limit <= 0) return [];
    const reply = await this.client.readMessagesBuffer(
      keys.chatMeta(chatId),
      keys.chatMessages(chatId),
      afterSeq,
      limit,
    );
    if (!Array.isArray(reply)) throw unexpectedReply("readMessages", reply);
    if (reply.length === 0) return [];
    const [first, ...bodies] = reply as unknown[];
    if (typeof first !== "number") throw unexpectedReply("readMessages", reply);
    return bodies.map((body, i) => {
      if (!(body instanceof Buffer)) throw new Error(`chat ${chatId}: message ${first + i} missing below the head`);
      return decodeMessageBody(chatId, first + i, toUint8Array(body));
    });
  }

  async ackDelivered(chatId: string, deviceId: string, throughSeq: number): Promise<number | undefined> {
    const [cursor] = await this.ackDeliveredMany(chatId, [{ deviceId, throughSeq }]);
    return cursor;
  }

  async ackDeliveredMany(chatId: string, acks: readonly DeviceAck[]): Promise<Array<number | undefined>> {
    if (acks.length === 0) return [];
    const reply = await this.client.ackDeliveredMany(
      keys.chatMeta(chatId),
      keys.chatCursors(chatId),
      keys.chatMessages(chatId),
      keys.chatDepartures(chatId),
      ...acks.flatMap((ack) => [ack.deviceId, ack.throughSeq]),
    );
    if (!Array.isArray(reply) || reply.length !== acks.length) throw unexpectedReply("ackDeliveredMany", reply);
    return reply.map((cursor: unknown) => {
      if (typeof cursor !== "number") throw unexpectedReply("ackDeliveredMany", reply);
      return cursor < 0 ? undefined : cursor;
    });
  }

  async getDeliveryCursor(chatId: string, deviceId: string): Promise<DeliveryCursor | undefined> {
    const reply = await this.client.readDeliveryCursor(keys.chatCursors(chatId), keys.chatDepartures(chatId), deviceId);
    if (reply === null) return undefined;
    if (!Array.isArray(reply) || typeof reply[0] !== "number") throw unexpectedReply("readDeliveryCursor", reply);
    const throughSeq = reply[0];
    const departure: unknown = reply[1];
    if (typeof departure !== "string") return { throughSeq };
    const [untilSeq, resumeSeq] = departure.split(":").map(Number);
    if (untilSeq === undefined) throw unexpectedReply("readDeliveryCursor", reply);
    return resumeSeq === undefined ? { throughSeq, untilSeq } : { throughSeq, untilSeq, resumeSeq };
  }

  async listDepartedChatIds(deviceId: string): Promise<string[]> {
    const listed = await this.client.smembers(keys.deviceDepartures(deviceId));
    const owed = await Promise.all(listed.map((chatId) => this.client.hexists(keys.chatDepartures(chatId), deviceId)));
    const stale = listed.filter((_, i) => owed[i] !== 1);
    // Received everything it was owed (or the removal never happened): forget the listing.
    if (stale.length > 0) await this.client.srem(keys.deviceDepartures(deviceId), ...stale);
    return listed.filter((_, i) => owed[i] === 1);
  }

  async applyGroupOperation(
    chatId: string,
    draft: MessageDraft,
    change: GroupChange,
    options: AppendOptions = {},
  ): Promise<AppendOutcome> {
    // Listed before the operation (a listing without membership reads as nothing),
    // unlisted after it: a crash between the steps leaves no member unlisted.
    await Promise.all([
      ...change.addedUserIds.map((userId) => this.client.sadd(keys.userChats(userId), chatId)),
      ...change.removedDeviceIds.map((deviceId) => this.client.sadd(keys.deviceDepartures(deviceId), chatId)),
    ]);
    let reply: unknown;
    try {
      reply = await this.client.applyGroupOperation(
        keys.chatMeta(chatId),
        keys.chatIds(chatId),
        keys.chatMessages(chatId),
        keys.chatCursors(chatId),
        keys.chatOperations(chatId),
        keys.chatDepartures(chatId),
        options.fenceToken ?? 0,
        Buffer.from(change.previousHash).toString("hex"),
        Buffer.from(change.operationHash).toString("hex"),
        JSON.stringify(chatToJson(change.record)),
        bufferView(draft.messageId),
        draft.senderDeviceId,
        bufferView(encodeMessageBody(draft)),
        change.addedDeviceIds.length,
        ...change.addedDeviceIds,
        ...change.removedDeviceIds,
      );
    } catch (error) {
      if (error instanceof Error && error.message.startsWith("FENCED ")) {
        throw new FencedError(chatId, Number(error.message.slice("FENCED ".length)));
      }
      if (error instanceof Error && error.message.startsWith("CONFLICT ")) {
        throw new RemessengerError(
          ErrorCode.ERROR_CODE_GROUP_CHANGED,
          "the group changed: this operation does not follow its last one; fetch the group and retry",
        );
      }
      throw error;
    }
    if (reply === null) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `chat ${chatId} not found`);
    const [outcome] = parseAppendReply([reply], 1);
    if (outcome === undefined) throw unexpectedReply("applyGroupOperation", reply);
    if (outcome.kind === "appended") {
      await Promise.all(change.removedUserIds.map((userId) => this.client.srem(keys.userChats(userId), chatId)));
    }
    return outcome;
  }

  async readGroupOperations(chatId: string, afterSeq: number, limit: number): Promise<Message[]> {
    if (limit <= 0) return [];
    const reply = await this.client.readGroupOperationsBuffer(keys.chatOperations(chatId), afterSeq, limit);
    if (!Array.isArray(reply)) throw unexpectedReply("readGroupOperations", reply);
    const out: Message[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const [seq, body] = [reply[i] as unknown, reply[i + 1] as unknown];
      if (typeof seq !== "number" || !(body instanceof Buffer)) throw unexpectedReply("readGroupOperations", reply);
      out.push(decodeMessageBody(chatId, seq, toUint8Array(body)));
    }
    return out;
  }

  async getCursors(chatId: string): Promise<DeviceCursor[]> {
    const flat = await this.client.zrange(keys.chatCursors(chatId), 0, "-1", "WITHSCORES");
    const cursors: DeviceCursor[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      cursors.push({ deviceId: String(flat[i]), throughSeq: Number(flat[i + 1]) });
    }
    return cursors;
  }

  // ── device keys (DeviceKeyStore), kept in redis-device-keys.ts ──────────

  private deviceKeysPart: RedisDeviceKeys | undefined;

  private get deviceKeys(): RedisDeviceKeys {
    this.deviceKeysPart ??= new RedisDeviceKeys(this.client);
    return this.deviceKeysPart;
  }

  publishPreKeys(deviceId: string, upload: PreKeyUpload): Promise<PreKeyCounts> {
    return this.deviceKeys.publishPreKeys(deviceId, upload);
  }

  takePreKeyBundle(deviceId: string): Promise<TakenBundle | undefined> {
    return this.deviceKeys.takePreKeyBundle(deviceId);
  }

  countPreKeys(deviceId: string): Promise<PreKeyCounts> {
    return this.deviceKeys.countPreKeys(deviceId);
  }

  addDevice(device: LinkedDevice): Promise<void> {
    return this.deviceKeys.addDevice(device);
  }

  getDeviceApproval(deviceId: string): Promise<DeviceApproval | undefined> {
    return this.deviceKeys.getDeviceApproval(deviceId);
  }

  addChatCursor(chatId: string, deviceId: string): Promise<boolean> {
    return this.deviceKeys.addChatCursor(chatId, deviceId);
  }

  /** Sends every queued append, then disconnects. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    await this.appends.close();
    await this.client.quit();
  }

  private commitAppends(ops: readonly AppendOp[]): Promise<Settlement<unknown>[]> {
    // Every script call is issued before the first await, in one tick, so
    // auto-pipelining writes them to the socket together.
    return this.waitReplicas > 0 ? this.commitAppendsReplicated(ops) : this.commitAppendsDirect(ops);
  }

  /**
   * The appends go out as usual (ioredis follows MOVED and failovers), then
   * one WAIT per master that served them, on the very connection that carried
   * them: WAIT covers every write that connection made before it. An op
   * resolves only when its script succeeded and its master's WAIT counted
   * enough replicas.
   */
  private async commitAppendsReplicated(ops: readonly AppendOp[]): Promise<Settlement<unknown>[]> {
    const settlements = await this.commitAppendsDirect(ops);
    const masters = new Map<string, number[]>();
    settlements.forEach((settlement, index) => {
      const op = ops[index];
      if (!settlement.ok || op === undefined) return;
      const master = masterOf(this.client, keys.chatMeta(op.chatId));
      const group = masters.get(master);
      if (group === undefined) masters.set(master, [index]);
      else group.push(index);
    });
    await Promise.all(
      [...masters].map(async ([master, indexes]) => {
        let error: RemessengerError | undefined;
        try {
          const connection = connectionTo(this.client, master);
          // A master known to have fewer replicas attached is not waited on for
          // the missing ones (that would cost the whole timeout per batch).
          const attached = this.knownReplicas(master, connection);
          const wanted = this.isReplicaRequired ? this.waitReplicas : Math.min(this.waitReplicas, attached);
          const acked = wanted === 0 ? 0 : await connection.wait(wanted, this.waitTimeoutMs);
          if (acked < wanted) {
            this.replicaCounts.delete(master);
            error = unavailable(
              `append not replicated: ${acked} of ${wanted} replicas within ${this.waitTimeoutMs} ms`,
            );
            if (!this.isReplicaRequired) {
              // Maybe the replica is gone: learn that now, so the retry is not refused again.
              const now = await attachedReplicas(connection);
              this.replicaCounts.set(master, { count: now, atMs: Date.now() });
              if (acked >= now) error = undefined;
            }
          }
          if (error === undefined && acked < this.waitReplicas) this.degradedAckCount += indexes.length;
        } catch (cause) {
          error = unavailable("could not confirm replication (WAIT failed)", cause);
        }
        if (error !== undefined) for (const index of indexes) settlements[index] = { ok: false, error };
      }),
    );
    return settlements;
  }

  private async commitAppendsDirect(ops: readonly AppendOp[]): Promise<Settlement<unknown>[]> {
    const replies = ops.map((op) => this.issueAppend(op));
    const results = await Promise.allSettled(replies);
    return results.map((result) =>
      result.status === "fulfilled"
        ? { ok: true, value: result.value }
        : { ok: false, error: result.reason as unknown },
    );
  }

  /**
   * Replicas attached to `master` as last seen (ROLE), refreshed in the
   * background once a second; optimistic (waitReplicas) until first seen.
   */
  private knownReplicas(master: string, connection: Redis): number {
    const known = this.replicaCounts.get(master);
    if (known === undefined) return this.waitReplicas;
    if (Date.now() - known.atMs > REPLICA_COUNT_TTL_MS) {
      known.atMs = Date.now(); // one refresh at a time
      attachedReplicas(connection).then(
        (count) => this.replicaCounts.set(master, { count, atMs: Date.now() }),
        () => this.replicaCounts.delete(master),
      );
    }
    return known.count;
  }

  private async issueAppend(op: AppendOp): Promise<AppendOutcome[]> {
    let reply: unknown;
    try {
      reply = await this.client.appendMessages(...appendKeys(op.chatId), ...op.args);
    } catch (error) {
      throw this.appendError(op, error);
    }
    return parseAppendOutcome(op, reply);
  }

  private appendError(op: AppendOp, error: unknown): unknown {
    // The script's error reply (see append-messages-4.lua).
    if (error instanceof Error && error.message.startsWith("FENCED ")) {
      return new FencedError(op.chatId, Number(error.message.slice("FENCED ".length)));
    }
    return error;
  }
}

function appendKeys(chatId: string): [string, string, string, string] {
  return [keys.chatMeta(chatId), keys.chatIds(chatId), keys.chatMessages(chatId), keys.chatCursors(chatId)];
}

function parseAppendOutcome(op: AppendOp, reply: unknown): AppendOutcome[] {
  if (reply === null) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `chat ${op.chatId} not found`);
  return parseAppendReply(reply, op.draftCount);
}

function unavailable(message: string, cause?: unknown): RemessengerError {
  return new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, message, { cause, retryAfterMs: 500 });
}

async function defineScripts(client: RedisClient): Promise<void> {
  for (const [name, file] of Object.entries(SCRIPTS)) {
    const lua = await readFile(new URL(`./lua/${file}.lua`, import.meta.url), "utf8");
    const numberOfKeys = Number(file.slice(file.lastIndexOf("-") + 1));
    client.defineCommand(name, { lua, numberOfKeys });
  }
  defineDeviceKeyScripts(client);
  defineLeaseScripts(client);
}

function parseAppendReply(reply: unknown, count: number): AppendOutcome[] {
  if (!Array.isArray(reply) || reply.length !== count) throw unexpectedReply("appendMessages", reply);
  return (reply as unknown[]).map((entry): AppendOutcome => {
    // A negative seq says the sender's cursor moved onto it (see the script's header).
    if (typeof entry === "number") return { kind: "appended", seq: Math.abs(entry), senderCaughtUp: entry < 0 };
    if (Array.isArray(entry)) {
      const [seq, senderDeviceId] = entry as unknown[];
      if (typeof seq === "number" && typeof senderDeviceId === "string")
        return { kind: "duplicate", seq, senderDeviceId };
    }
    throw unexpectedReply("appendMessages", reply);
  });
}

function unexpectedReply(script: string, reply: unknown): Error {
  return new Error(`unexpected reply from ${script}: ${JSON.stringify(reply)}`);
}

/** ioredis sends only Buffers as bytes; a view shares the memory instead of copying it. */
function bufferView(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A view, not a copy: Buffer is a Uint8Array subclass, but the port speaks plain Uint8Array. */
function toUint8Array(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

function compareText(a: string, b: string): number {
  if (a === b) return 0;
  return a < b ? -1 : 1;
}

// Records at rest are JSON; parsing checks every field, since a key written by
// anything else must fail here rather than deep inside the core.

function userToJson(user: UserRecord): UserRecord {
  return { userId: user.userId, displayName: user.displayName, createdAtMs: user.createdAtMs };
}

function parseUser(json: string): UserRecord {
  const value = parseObject(json, "user");
  return {
    userId: stringField(value, "userId"),
    displayName: stringField(value, "displayName"),
    createdAtMs: numberField(value, "createdAtMs"),
  };
}

function deviceToJson(device: DeviceRecord): Record<string, unknown> {
  return {
    deviceId: device.deviceId,
    userId: device.userId,
    identityKey: Buffer.from(device.identityKey).toString("base64"),
    createdAtMs: device.createdAtMs,
  };
}

function parseDevice(json: string): DeviceRecord {
  const value = parseObject(json, "device");
  return {
    deviceId: stringField(value, "deviceId"),
    userId: stringField(value, "userId"),
    identityKey: new Uint8Array(Buffer.from(stringField(value, "identityKey"), "base64")),
    createdAtMs: numberField(value, "createdAtMs"),
  };
}

function chatToJson(chat: ChatRecord): ChatRecord {
  return {
    chatId: chat.chatId,
    kind: chat.kind,
    title: chat.title,
    memberUserIds: [...chat.memberUserIds],
    createdByUserId: chat.createdByUserId,
    createdAtMs: chat.createdAtMs,
    ...(chat.kind === ChatKind.CHAT_KIND_GROUP
      ? { adminUserIds: [...(chat.adminUserIds ?? [])], epoch: chat.epoch ?? 0 }
      : {}),
  };
}

function parseChat(json: string): ChatRecord {
  const value = parseObject(json, "chat");
  const members = value["memberUserIds"];
  if (!Array.isArray(members) || !members.every((member) => typeof member === "string")) {
    throw new Error("stored chat: memberUserIds is not a list of strings");
  }
  const chat: ChatRecord = {
    chatId: stringField(value, "chatId"),
    // Written from a ChatKind by chatToJson and never rewritten.
    kind: numberField(value, "kind") as ChatRecord["kind"],
    title: stringField(value, "title"),
    memberUserIds: members,
    createdByUserId: stringField(value, "createdByUserId"),
    createdAtMs: numberField(value, "createdAtMs"),
  };
  if (chat.kind !== ChatKind.CHAT_KIND_GROUP) return chat;
  const admins = value["adminUserIds"] ?? [];
  if (!Array.isArray(admins) || !admins.every((admin) => typeof admin === "string")) {
    throw new Error("stored chat: adminUserIds is not a list of strings");
  }
  return { ...chat, adminUserIds: admins, epoch: typeof value["epoch"] === "number" ? value["epoch"] : 0 };
}

function parseObject(json: string, what: string): Record<string, unknown> {
  const value: unknown = JSON.parse(json);
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new Error(`stored ${what} is not an object`);
  return value as Record<string, unknown>;
}

function stringField(value: Record<string, unknown>, name: string): string {
  const field = value[name];
  if (typeof field !== "string") throw new Error(`stored record: ${name} is not a string`);
  return field;
}

function numberField(value: Record<string, unknown>, name: string): number {
  const field = value[name];
  if (typeof field !== "number") throw new Error(`stored record: ${name} is not a number`);
  return field;
}
