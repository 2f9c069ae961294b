/**
 * The server's operations, as every edge (WebSocket, gRPC, later HTTPS and the
 * DNS tunnel) offers them. It validates requests, authenticates devices and
 * routes work to chat actors and delivery pumps; it knows nothing of sockets.
 *
 * `sendMessage` does no await before the chat's mailbox, so sends from one
 * connection reach their chat in the order they arrived.
 *
 * Groups: a group is created with its first signed operation (CREATE), and
 * every membership change is a send carrying a signed operation, checked and
 * sequenced by the chat actor (core/group-change.ts). Receipts of a group go
 * only to the acking user's own devices: a broadcast of every member's ack to
 * every member grows with the square of the group.
 */
import type { Logger } from "pino";
import {
  RemessengerError,
  directChatId,
  isId,
  newId,
  MAX_ACKS_PER_REQUEST,
  MAX_CHAT_MEMBERS_AT_CREATE,
  MAX_CHAT_TITLE_CHARS,
  MAX_DEVICE_PAYLOADS,
  MAX_DISPLAY_NAME_CHARS,
  MAX_MESSAGE_BYTES,
  MESSAGE_ID_BYTES,
  loginProof,
  registerProof,
  GroupOperationError,
  type GroupState,
  decodeOperation,
  nextGroupState,
  operationMessageId,
  operationProof,
  type AckRequest,
  type Chat,
  ChatKind,
  type CreateChatRequest,
  type CreateChatResponse,
  ErrorCode,
  GroupOperationKind,
  type GetChallengeResponse,
  type GetChatRequest,
  type GetChatResponse,
  type GetGroupOperationsRequest,
  type GetGroupOperationsResponse,
  type GetUserRequest,
  type GetUserResponse,
  type ListChatsResponse,
  type LinkDeviceRequest,
  type LinkDeviceResponse,
  type LoginRequest,
  type LoginResponse,
  type PingRequest,
  type PingResponse,
  type Receipt,
  type RegisterRequest,
  type RegisterResponse,
  type SendMessageRequest,
  type SendMessageResponse,
  type SignedGroupOperation,
} from "@remessenger/protocol";
import type { ChatState, Store } from "../store/store.ts";
import { AckBatcher } from "./ack-batcher.ts";
import { ChatActorRegistry } from "./chat-actor.ts";
import type { ChatRouter } from "./chat-routing.ts";
import type { Clock } from "./clock.ts";
import { DeliveryPump, type PushSink } from "./delivery-pump.ts";
import { checkDeviceCoverage } from "./device-coverage.ts";
import { ChallengeBook, SessionTokens, verifyDeviceSignature } from "./device-auth.ts";
import { toRemessengerError } from "./group-change.ts";
import { DeviceKeys } from "./device-keys.ts";
import type { PushBus } from "./push-bus.ts";

/** A device that proved its identity on this connection or with a token. */
export interface AuthedDevice {
  userId: string;
  deviceId: string;
}

export interface MessengerDeps {
  store: Store;
  bus: PushBus;
  clock: Clock;
  random: (n: number) => Uint8Array;
  /** The server secret from the store (signs session tokens). */
  secret: Uint8Array;
  log: Logger;
  /** Many nodes: sends go to the chat's owner node (core/chat-routing.ts). Absent on one node. */
  router?: ChatRouter;
}

/** A subscribed connection: its pump, and how to end it. */
export interface Subscription {
  readonly pump: DeliveryPump;
  /** Resolves when everything queued before the subscribe was pushed. */
  readonly synced: Promise<void>;
  close(): void;
}

/** Operations one GetGroupOperations answer carries at most (a client pages on). */
const MAX_GROUP_OPERATIONS_PER_READ = 500;

function invalid(message: string): RemessengerError {
  return new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message);
}

function chatNotFound(chatId: string): RemessengerError {
  // One answer for "no such chat" and "not yours", so chat ids leak nothing.
  return new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `chat ${chatId} not found, or you are not a member`);
}

function requireId(kind: "user" | "device" | "chat", value: string, field: string): void {
  if (!isId(kind, value)) throw invalid(`${field} is not a ${kind} id: ${JSON.stringify(value.slice(0, 40))}`);
}

/**
 * "No such chat" and "not a member" leave as one answer (see chatNotFound).
 * PERMISSION_DENIED passes: only members get it (a non-admin's group change).
 */
async function hideChat<T>(chatId: string, sending: Promise<T>): Promise<T> {
  try {
    return await sending;
  } catch (error) {
    const isHidden = error instanceof RemessengerError && error.code === ErrorCode.ERROR_CODE_NOT_FOUND;
    throw isHidden ? chatNotFound(chatId) : error;
  }
}

function toChat(state: ChatState, receipts: Receipt[] = []): Chat {
  return {
    chatId: state.chatId,
    kind: state.kind,
    title: state.title,
    memberUserIds: state.memberUserIds,
    headSeq: state.headSeq,
    createdAtMs: state.createdAtMs,
    createdByUserId: state.createdByUserId,
    receipts,
    ...(state.kind === ChatKind.CHAT_KIND_GROUP
      ? {
          group: {
            adminUserIds: state.adminUserIds ?? [],
            epoch: state.epoch ?? 0,
            lastOperationHash: state.lastOperationHash ?? new Uint8Array(0),
            lastOperationSeq: state.lastOperationSeq ?? 0,
          },
        }
      : {}),
  };
}

export class Messenger {
  readonly actors: ChatActorRegistry;
  readonly challenges: ChallengeBook;
  /** Prekeys and device linking (end-to-end encryption's server side). */
  readonly deviceKeys: DeviceKeys;
  private readonly tokens: SessionTokens;
  private readonly deps: MessengerDeps;
  private readonly pumps = new Set<DeliveryPump>();
  private readonly acks: AckBatcher;

  constructor(deps: MessengerDeps) {
    this.deps = deps;
    this.acks = new AckBatcher(deps.store);
    this.challenges = new ChallengeBook(deps.clock, deps.random);
    this.tokens = new SessionTokens(deps.secret, deps.clock);
    this.deviceKeys = new DeviceKeys({
      store: deps.store,
      clock: deps.clock,
      random: deps.random,
      challenges: this.challenges,
    });
    this.actors = new ChatActorRegistry({
      store: deps.store,
      bus: deps.bus,
      clock: deps.clock,
      onStoreError: (chatId, error) => {
        deps.log.error({ chatId, err: error }, "append failed in the store");
      },
      checkSends: (chat, drafts) => checkDeviceCoverage(deps.store, chat, drafts),
      ...(deps.router === undefined
        ? {}
        : {
            fenceTokenOf: (chatId: string) => deps.router?.tokenFor(chatId),
            onFenced: (chatId: string) => {
              deps.log.warn({ chatId }, "append fenced: a newer owner has the chat's shard");
              deps.router?.onFenced(chatId);
            },
          }),
    });
  }

  newChallenge(): GetChallengeResponse {
    return this.challenges.issue();
  }

  async register(request: RegisterRequest): Promise<{ device: AuthedDevice; response: RegisterResponse }> {
    const displayName = request.displayName.trim();
    if (displayName.length === 0 || displayName.length > MAX_DISPLAY_NAME_CHARS) {
      throw invalid(`display name must be 1 to ${MAX_DISPLAY_NAME_CHARS} characters`);
    }
    this.challenges.consume(request.nonce);
    verifyDeviceSignature(
      request.identityKey,
      registerProof(request.nonce, request.identityKey, request.displayName),
      request.signature,
    );
    const now = this.deps.clock.nowMs();
    const device: AuthedDevice = {
      userId: newId("user", this.deps.random),
      deviceId: newId("device", this.deps.random),
    };
    await this.deps.store.createUser(
      { userId: device.userId, displayName, createdAtMs: now },
      { deviceId: device.deviceId, userId: device.userId, identityKey: request.identityKey, createdAtMs: now },
    );
    this.deps.log.info({ userId: device.userId, deviceId: device.deviceId }, "device registered");
    return {
      device,
      response: { ...device, ...this.tokens.issueSession(device.deviceId), serverTimeMs: now },
    };
  }

  async login(request: LoginRequest): Promise<{ device: AuthedDevice; response: LoginResponse }> {
    requireId("device", request.deviceId, "device_id");
    this.challenges.consume(request.nonce);
    const record = await this.deps.store.getDevice(request.deviceId);
    if (record === undefined) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, `unknown device ${request.deviceId}`);
    }
    verifyDeviceSignature(record.identityKey, loginProof(request.nonce, request.deviceId), request.signature);
    const device: AuthedDevice = { userId: record.userId, deviceId: record.deviceId };
    return {
      device,
      response: {
        ...device,
        ...this.tokens.issueSession(device.deviceId),
        serverTimeMs: this.deps.clock.nowMs(),
        preKeyStock: await this.deviceKeys.stock(device.deviceId),
      },
    };
  }

  /** Adds a device to an existing user, approved by one of its devices (see DeviceKeys.link). */
  async linkDevice(request: LinkDeviceRequest): Promise<{ device: AuthedDevice; response: LinkDeviceResponse }> {
    const device = await this.deviceKeys.link(request);
    this.deps.log.info({ userId: device.userId, deviceId: device.deviceId }, "device linked");
    return {
      device,
      response: {
        ...device,
        ...this.tokens.issueSession(device.deviceId),
        serverTimeMs: this.deps.clock.nowMs(),
      },
    };
  }

  /** The device a session token stands for; throws UNAUTHENTICATED. */
  async authenticate(token: string): Promise<AuthedDevice> {
    const deviceId = this.tokens.verify(token);
    const record = await this.deps.store.getDevice(deviceId);
    if (record === undefined)
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "device no longer exists");
    return { userId: record.userId, deviceId: record.deviceId };
  }

  async getUser(_device: AuthedDevice, request: GetUserRequest): Promise<GetUserResponse> {
    requireId("user", request.userId, "user_id");
    const user = await this.deps.store.getUser(request.userId);
    if (user === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `no user ${request.userId}`);
    const devices = await this.deps.store.listUserDevices(user.userId);
    const approvals = await Promise.all(devices.map((d) => this.deps.store.getDeviceApproval(d.deviceId)));
    return {
      user: {
        userId: user.userId,
        displayName: user.displayName,
        devices: devices.map((d, i) => ({
          deviceId: d.deviceId,
          identityKey: d.identityKey,
          createdAtMs: d.createdAtMs,
          approvedByDeviceId: approvals[i]?.approvedByDeviceId ?? "",
          approvalSignature: approvals[i]?.signature ?? new Uint8Array(0),
          approvalExpiresAtMs: approvals[i]?.expiresAtMs ?? 0,
        })),
      },
    };
  }

  async createChat(device: AuthedDevice, request: CreateChatRequest): Promise<CreateChatResponse> {
    if (request.kind === ChatKind.CHAT_KIND_GROUP) return this.createGroup(device, request);
    if (request.kind !== ChatKind.CHAT_KIND_DIRECT) throw invalid("chat kind must be DIRECT or GROUP");
    // Exactly the one other user, as the proto says: the caller is implied, and a
    // list that names the caller too ([peer, self]) is refused, not repaired.
    const [other, ...extra] = request.memberUserIds;
    if (other === undefined || extra.length > 0) {
      throw invalid("a direct chat lists exactly one member_user_ids: the other user (the caller is implied)");
    }
    requireId("user", other, "member_user_ids");
    if (other === device.userId) throw invalid("member_user_ids names the caller; list the other user only");
    const title = request.title.trim();
    if (title.length > MAX_CHAT_TITLE_CHARS) throw invalid(`title is over ${MAX_CHAT_TITLE_CHARS} characters`);
    const chatId = directChatId(device.userId, other);

    const members = [device.userId, other];
    const { chat, created } = await this.deps.store.createChat(
      {
        chatId,
        kind: request.kind,
        title,
        memberUserIds: members,
        createdByUserId: device.userId,
        createdAtMs: this.deps.clock.nowMs(),
      },
      await this.devicesOfMembers(members),
    );
    if (created) this.deps.log.info({ chatId, userId: device.userId, members: members.length }, "chat created");
    return { chat: toChat(chat), created };
  }

  /**
   * A group: its id and members come from the signed CREATE (the genesis),
   * which becomes seq 1 of the group through its actor. Sending the same
   * request again finds the group and repeats nothing.
   */
  private async createGroup(device: AuthedDevice, request: CreateChatRequest): Promise<CreateChatResponse> {
    const genesis = request.genesis;
    const chatId = request.chatId ?? "";
    requireId("chat", chatId, "chat_id");
    if (genesis === undefined) throw invalid("a group starts with its signed CREATE operation (genesis)");
    const state = this.genesisState(device, chatId, genesis);
    if (state.members.length > MAX_CHAT_MEMBERS_AT_CREATE) {
      throw invalid(`a group starts with at most ${MAX_CHAT_MEMBERS_AT_CREATE} members; add more afterwards`);
    }
    const record = await this.deviceRecord(device);
    verifyDeviceSignature(record.identityKey, operationProof(genesis.operation), genesis.signature);
    const { created } = await this.deps.store.createChat(
      {
        chatId,
        kind: ChatKind.CHAT_KIND_GROUP,
        title: state.title,
        memberUserIds: state.members,
        createdByUserId: device.userId,
        createdAtMs: this.deps.clock.nowMs(),
        adminUserIds: [],
        epoch: 0,
      },
      await this.devicesOfMembers(state.members),
    );
    try {
      await this.sendMessage(device, {
        chatId,
        messageId: operationMessageId(genesis.operation),
        payload: new Uint8Array(0),
        devicePayloads: [],
        groupOperation: genesis,
      });
    } catch (error) {
      if (error instanceof RemessengerError && error.code === ErrorCode.ERROR_CODE_GROUP_CHANGED) {
        throw new RemessengerError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, `chat id ${chatId} is taken by another group`);
      }
      throw error;
    }
    if (created) {
      this.deps.log.info({ chatId, userId: device.userId, members: state.members.length }, "group created");
    }
    // From the store: the group's actor may live on another node (its shard's owner).
    const chat = await this.deps.store.getChat(chatId);
    if (chat === undefined) throw chatNotFound(chatId);
    return { chat: toChat(chat), created };
  }

  /** The state the group's CREATE makes, once checked as the creator's genesis of this chat. */
  private genesisState(device: AuthedDevice, chatId: string, genesis: SignedGroupOperation): GroupState {
    try {
      const operation = decodeOperation(genesis);
      if (operation.kind !== GroupOperationKind.GROUP_OPERATION_KIND_CREATE) {
        throw invalid("a group's first operation is CREATE");
      }
      if (operation.actorUserId !== device.userId || operation.actorDeviceId !== device.deviceId) {
        throw new RemessengerError(
          ErrorCode.ERROR_CODE_PERMISSION_DENIED,
          "the genesis is signed by the device that creates the group",
        );
      }
      if (operation.chatId !== chatId) throw invalid("the genesis names another chat");
      return nextGroupState(chatId, undefined, genesis.operation, operation);
    } catch (error) {
      if (error instanceof GroupOperationError) throw toRemessengerError(error);
      throw error;
    }
  }

  private async deviceRecord(device: AuthedDevice): Promise<{ identityKey: Uint8Array }> {
    const record = await this.deps.store.getDevice(device.deviceId);
    if (record === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "unknown device");
    return record;
  }

  /** Every device of every member; NOT_FOUND names a user without any (no such user). */
  private async devicesOfMembers(members: readonly string[]): Promise<string[]> {
    const lists = await Promise.all(members.map((userId) => this.deps.store.listUserDevices(userId)));
    const unknown = members.filter((_, i) => (lists[i]?.length ?? 0) === 0);
    if (unknown.length > 0) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `no user ${unknown.join(", ")}`);
    return lists.flat().map((d) => d.deviceId);
  }

  async getChat(device: AuthedDevice, request: GetChatRequest): Promise<GetChatResponse> {
    requireId("chat", request.chatId, "chat_id");
    const chat = await this.memberChat(device, request.chatId);
    return { chat: toChat(chat, await this.receiptsOf(chat, new Map())) };
  }

  async listChats(device: AuthedDevice): Promise<ListChatsResponse> {
    const ids = await this.deps.store.listUserChatIds(device.userId);
    const chats = (await Promise.all(ids.map((id) => this.deps.store.getChat(id)))).filter((c) => c !== undefined);
    const owners = new Map<string, string>();
    return { chats: await Promise.all(chats.map(async (chat) => toChat(chat, await this.receiptsOf(chat, owners)))) };
  }

  /** A group's membership operations after a seq, for members checking the chain. */
  async getGroupOperations(
    device: AuthedDevice,
    request: GetGroupOperationsRequest,
  ): Promise<GetGroupOperationsResponse> {
    requireId("chat", request.chatId, "chat_id");
    const chat = await this.memberChat(device, request.chatId);
    if (chat.kind !== ChatKind.CHAT_KIND_GROUP) return { operations: [] };
    const limit = Math.min(
      request.limit === 0 ? MAX_GROUP_OPERATIONS_PER_READ : request.limit,
      MAX_GROUP_OPERATIONS_PER_READ,
    );
    return { operations: await this.deps.store.readGroupOperations(chat.chatId, request.afterSeq, limit) };
  }

  /**
   * Validates, then queues the send in the chat's mailbox (or hands it to the
   * chat's owner node). It is async but awaits nothing before the mailbox, so
   * sends keep their arrival order.
   */
  async sendMessage(device: AuthedDevice, request: SendMessageRequest): Promise<SendMessageResponse> {
    const sendLocal = this.validatedSend(device, request);
    const { router } = this.deps;
    return hideChat(request.chatId, router === undefined ? sendLocal() : router.send(device, request, sendLocal));
  }

  /**
   * A send another node forwarded here because this node owns the chat's
   * shard; the device was authenticated by that node. Refused with
   * NotOwnerError when this node does not own the shard.
   */
  async acceptForwardedSend(device: AuthedDevice, request: SendMessageRequest): Promise<SendMessageResponse> {
    const sendLocal = this.validatedSend(device, request);
    const { router } = this.deps;
    return hideChat(request.chatId, router === undefined ? sendLocal() : router.acceptForwarded(request, sendLocal));
  }

  /** Checks the request and returns the step that queues it in this node's actor. */
  private validatedSend(device: AuthedDevice, request: SendMessageRequest): () => Promise<SendMessageResponse> {
    requireId("chat", request.chatId, "chat_id");
    if (request.messageId.length !== MESSAGE_ID_BYTES) throw invalid(`message_id must be ${MESSAGE_ID_BYTES} bytes`);
    const { groupOperation } = request;
    if (groupOperation !== undefined) {
      if (request.payload.length > 0 || request.devicePayloads.length > 0) {
        throw invalid("a group operation carries no payload");
      }
      const size = groupOperation.operation.length + groupOperation.signature.length;
      if (size > MAX_MESSAGE_BYTES) {
        throw new RemessengerError(
          ErrorCode.ERROR_CODE_TOO_LARGE,
          `operation of ${size} bytes exceeds ${MAX_MESSAGE_BYTES}`,
        );
      }
      return () => this.queueSend(device, request, groupOperation);
    }
    if (request.devicePayloads.length > MAX_DEVICE_PAYLOADS) {
      throw invalid(`at most ${MAX_DEVICE_PAYLOADS} device payloads`);
    }
    let size = request.payload.length;
    const addressed = new Set<string>();
    for (const entry of request.devicePayloads) {
      requireId("device", entry.deviceId, "device_payloads.device_id");
      if (addressed.has(entry.deviceId)) throw invalid(`two device payloads for ${entry.deviceId}`);
      addressed.add(entry.deviceId);
      size += entry.ciphertext.length;
    }
    if (size === 0) throw invalid("message is empty");
    if (size > MAX_MESSAGE_BYTES) {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_TOO_LARGE,
        `message of ${size} bytes exceeds ${MAX_MESSAGE_BYTES}`,
      );
    }
    return () => this.queueSend(device, request, undefined);
  }

  private async queueSend(
    device: AuthedDevice,
    request: SendMessageRequest,
    groupOperation: SignedGroupOperation | undefined,
  ): Promise<SendMessageResponse> {
    const outcome = await this.actors.get(request.chatId).send({
      messageId: request.messageId,
      senderUserId: device.userId,
      senderDeviceId: device.deviceId,
      serverTimeMs: this.deps.clock.nowMs(),
      payload: request.payload,
      devicePayloads: request.devicePayloads,
      ...(groupOperation === undefined ? {} : { groupOperation }),
    });
    return { seq: outcome.seq, duplicate: outcome.duplicate, serverTimeMs: outcome.serverTimeMs };
  }

  /**
   * Moves the device's cursors and tells the chats' members (receipts).
   * Returns the cursor per chat, for the acking connection's own pump.
   */
  async ack(device: AuthedDevice, request: AckRequest): Promise<Array<{ chatId: string; throughSeq: number }>> {
    if (request.acks.length > MAX_ACKS_PER_REQUEST) throw invalid(`at most ${MAX_ACKS_PER_REQUEST} acks per request`);
    for (const ack of request.acks) requireId("chat", ack.chatId, "acks.chat_id");
    const results = [];
    for (const ack of request.acks) {
      const cursor = await this.acks.ack(ack.chatId, device.deviceId, ack.throughSeq);
      const chat = await this.actors.get(ack.chatId).state();
      if (cursor === undefined) {
        // Removed from a group since the push: its ack has nothing left to move.
        if (chat.kind === ChatKind.CHAT_KIND_GROUP && !chat.memberUserIds.includes(device.userId)) continue;
        throw chatNotFound(ack.chatId);
      }
      results.push({ chatId: ack.chatId, throughSeq: cursor });
      const receipt = { chatId: ack.chatId, userId: device.userId, deviceId: device.deviceId, throughSeq: cursor };
      const audience = chat.kind === ChatKind.CHAT_KIND_GROUP ? [device.userId] : chat.memberUserIds;
      this.deps.bus.publish(audience, { kind: "receipt", receipt });
    }
    return results;
  }

  /**
   * Starts delivering the device's queue to `sink`: everything not acked, then
   * live messages. The bus subscription comes first, so nothing slips between.
   */
  subscribe(device: AuthedDevice, sink: PushSink): Subscription {
    const { log, store, bus, clock } = this.deps;
    const pump = new DeliveryPump({
      deviceId: device.deviceId,
      userId: device.userId,
      watchGroup: (chatId) => bus.watchGroup(device.userId, chatId),
      store,
      sink,
      clock,
      onError: (error) => {
        log.error({ deviceId: device.deviceId, err: error }, "delivery failed");
      },
    });
    const unsubscribe = bus.subscribe(device.userId, (event) => {
      if (event.kind === "message") pump.onMessage(event.message, event.senderCaughtUp);
      else if (event.kind === "receipt") pump.onReceipt(event.receipt);
      else if (event.kind === "left") pump.onLeft(event.chatId);
      else pump.resync();
    });
    const synced = bus
      .ready(device.userId)
      .then(() =>
        // Groups the device was removed from still owe it their entries through the removal.
        Promise.all([store.listUserChatIds(device.userId), store.listDepartedChatIds(device.deviceId)]),
      )
      .then(([chatIds, departed]) => pump.start([...new Set([...chatIds, ...departed])]));
    this.pumps.add(pump);
    return {
      pump,
      synced,
      close: () => {
        this.pumps.delete(pump);
        pump.stop();
        unsubscribe();
      },
    };
  }

  ping(request: PingRequest): PingResponse {
    return { clientTimeMs: request.clientTimeMs, serverTimeMs: this.deps.clock.nowMs() };
  }

  /** Subscribed connections and their pushed-but-unacked messages, for metrics. */
  get deliveryStats(): { subscriptions: number; unacked: number } {
    let unacked = 0;
    for (const pump of this.pumps) unacked += pump.unacked;
    return { subscriptions: this.pumps.size, unacked };
  }

  /** Waits until every queued send is durable and answered (graceful shutdown). */
  async drain(): Promise<void> {
    await this.actors.drained();
  }

  /**
   * The chat's non-zero delivery cursors, with the user of each device
   * (`owners` caches device → user). None for groups: see the module header.
   */
  private async receiptsOf(chat: ChatState, owners: Map<string, string>): Promise<Receipt[]> {
    if (chat.kind === ChatKind.CHAT_KIND_GROUP) return [];
    const cursors = (await this.deps.store.getCursors(chat.chatId)).filter((c) => c.throughSeq > 0);
    if (cursors.some((c) => !owners.has(c.deviceId))) {
      for (const userId of chat.memberUserIds) {
        for (const d of await this.deps.store.listUserDevices(userId)) owners.set(d.deviceId, userId);
      }
    }
    return cursors.flatMap((c) => {
      const userId = owners.get(c.deviceId);
      return userId === undefined
        ? []
        : [{ chatId: chat.chatId, userId, deviceId: c.deviceId, throughSeq: c.throughSeq }];
    });
  }

  private async memberChat(device: AuthedDevice, chatId: string): Promise<ChatState> {
    const chat = await this.deps.store.getChat(chatId);
    if (chat === undefined || !chat.memberUserIds.includes(device.userId)) throw chatNotFound(chatId);
    return chat;
  }
}
