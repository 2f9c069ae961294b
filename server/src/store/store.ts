/**
 * The Store port: everything the server core keeps, behind one narrow interface.
 * Adapters (SqliteStore, RedisStore) pass the same contract suite
 * (store-contract.ts). The core never learns which one it runs on.
 *
 * Invariants every adapter keeps:
 * - A chat's sequence is gapless: appends assign head+1, head+2, ... in order.
 * - Appending a message id already in the chat assigns nothing and returns the
 *   first seq (idempotent sends), also within one batch and after the message
 *   itself was trimmed.
 * - A promise from appendMessages resolves only after the append is durable
 *   (survives kill -9 of the server process).
 * - A device's delivery cursor only moves forward and never past the head.
 * - A message is dropped once every device with a cursor in the chat acked it.
 * - A group operation is applied only on top of the chain head it names
 *   (compare-and-set), in the same atomic step as its append; its new members'
 *   devices get cursors just below it (they receive it and what follows, and
 *   nothing before), and the operation is kept in the group's chain after its
 *   message is trimmed.
 * - A removed member's device keeps its cursor, bounded by the removal's seq
 *   (`untilSeq`), until it acked through that seq: it is owed every entry up
 *   to and including its removal (held back from trimming like any cursor),
 *   and nothing after. Then its cursor and that bound are dropped.
 */
import {
  type ChatKind,
  type DevicePayload,
  ErrorCode,
  type Message,
  RemessengerError,
  type SignedGroupOperation,
} from "@remessenger/protocol";
import type { DeviceKeyStore } from "./device-keys.ts";

export interface UserRecord {
  userId: string;
  displayName: string;
  createdAtMs: number;
}

export interface DeviceRecord {
  deviceId: string;
  userId: string;
  /** Raw 32-byte Ed25519 public key. */
  identityKey: Uint8Array;
  createdAtMs: number;
}

export interface ChatRecord {
  chatId: string;
  kind: ChatKind;
  title: string;
  memberUserIds: string[];
  createdByUserId: string;
  createdAtMs: number;
  /** Groups only: admins (sorted) and the epoch; before the CREATE, none and 0. */
  adminUserIds?: string[];
  epoch?: number;
}

export interface ChatState extends ChatRecord {
  /** Seq of the newest message; 0 for an empty chat. */
  headSeq: number;
  /** Groups: the hash and seq of the last operation (empty and 0 before the CREATE). */
  lastOperationHash?: Uint8Array;
  lastOperationSeq?: number;
}

/** One device's ack of a chat, through `throughSeq`. */
export interface DeviceAck {
  deviceId: string;
  throughSeq: number;
}

/** What a delivery pump needs of a chat: cheap to read whatever the chat's size. */
export interface ChatHead {
  kind: ChatKind;
  headSeq: number;
}

/** A group operation the core validated, as the store applies it (see applyGroupOperation). */
export interface GroupChange {
  /** The chain head it follows (empty before the CREATE); another stored head refuses it. */
  previousHash: Uint8Array;
  /** The operation's own hash: the new head. */
  operationHash: Uint8Array;
  /** The chat after the operation (members, admins, title, epoch). */
  record: ChatRecord;
  /** Devices of added members: a cursor just below the operation's seq. */
  addedDeviceIds: readonly string[];
  addedUserIds: readonly string[];
  /** Devices of removed members: cursors bounded by the operation's seq (see DeliveryCursor.untilSeq). */
  removedDeviceIds: readonly string[];
  removedUserIds: readonly string[];
}

/** A message before the chat assigned its seq. */
export interface MessageDraft {
  messageId: Uint8Array;
  senderUserId: string;
  senderDeviceId: string;
  serverTimeMs: number;
  payload: Uint8Array;
  devicePayloads: DevicePayload[];
  /** A group operation (as signed), for applyGroupOperation's drafts. */
  groupOperation?: SignedGroupOperation;
}

export type AppendOutcome =
  /**
   * Appended at `seq`. `senderCaughtUp`: the sender device's cursor moved onto
   * it, so that device has everything through `seq` and needs no echo of it.
   */
  | { kind: "appended"; seq: number; senderCaughtUp: boolean }
  /** The id was in the chat already; `senderDeviceId` is who sent it first. */
  | { kind: "duplicate"; seq: number; senderDeviceId: string };

/** How a writer that holds a shard lease (many nodes) appends. */
export interface AppendOptions {
  /**
   * The fencing token of the writer's lease on the chat's shard. The store
   * refuses (FencedError) an append whose token is below the highest one that
   * wrote the chat, and raises it when higher. 0 or absent: no lease (one node).
   * A single-node adapter may ignore it.
   */
  fenceToken?: number;
}

/** The append was refused: a writer with a newer lease has written the chat. Nothing was written. */
export class FencedError extends RemessengerError {
  override readonly name = "FencedError";
  readonly chatId: string;
  readonly storedToken: number;

  constructor(chatId: string, storedToken: number) {
    // UNAVAILABLE: the chat's new owner takes the same send; retrying is right.
    super(
      ErrorCode.ERROR_CODE_UNAVAILABLE,
      `chat ${chatId} is fenced at token ${storedToken}: this node lost the shard`,
    );
    this.chatId = chatId;
    this.storedToken = storedToken;
  }
}

/** Where a device stands in a chat's delivery. */
export interface DeliveryCursor {
  /** Everything through this seq reached the device. */
  throughSeq: number;
  /**
   * The device's user was removed from the group at this seq: the device is
   * owed the entries through it (the removal included) and nothing after.
   * Absent for a member's device.
   */
  untilSeq?: number;
  /**
   * Re-added to the group after its removal while still owed entries: once
   * through `untilSeq` its cursor continues at this seq (the re-addition's
   * seq - 1), skipping what was sent while it was out.
   */
  resumeSeq?: number;
}

export interface DeviceCursor {
  deviceId: string;
  /** Everything through this seq reached the device. */
  throughSeq: number;
}

export interface Store extends DeviceKeyStore {
  /**
   * The server's long-lived secret (signs session tokens). The first call
   * stores `candidate`; every later call, also after restarts, returns that.
   */
  loadOrCreateServerSecret(candidate: Uint8Array): Promise<Uint8Array>;

  /**
   * Stores a new user with its first device. Ids are fresh; no overwrite: a
   * taken user id or device id rejects with ALREADY_EXISTS and changes nothing.
   */
  createUser(user: UserRecord, device: DeviceRecord): Promise<void>;
  getUser(userId: string): Promise<UserRecord | undefined>;
  getDevice(deviceId: string): Promise<DeviceRecord | undefined>;
  listUserDevices(userId: string): Promise<DeviceRecord[]>;

  /**
   * Creates the chat and a cursor at 0 for each of `memberDeviceIds`, and lists
   * it under each member. Idempotent by chatId: when it exists, nothing changes
   * and the stored chat is returned with created=false (a retry after a crash
   * also completes the listing under the stored chat's members).
   */
  createChat(chat: ChatRecord, memberDeviceIds: readonly string[]): Promise<{ chat: ChatState; created: boolean }>;
  getChat(chatId: string): Promise<ChatState | undefined>;
  /** The chat's kind and head without its members (a group may have 10,000); undefined without the chat. */
  getChatHead(chatId: string): Promise<ChatHead | undefined>;
  /** Ids of the chats the user is a member of, in no particular order. */
  listUserChatIds(userId: string): Promise<string[]>;

  /**
   * Appends in order, atomically per call, durable on resolve. Outcomes match
   * `drafts` one to one. When the sender device's cursor is exactly one below
   * the new seq it moves onto it (the sender has its own message); duplicates
   * move no cursor. Rejects with NOT_FOUND when the chat does not exist, and
   * with UNAVAILABLE when the store is closed or its write queue is full.
   * An empty `drafts` resolves to [] without touching the chat. With a
   * `fenceToken` below the chat's stored one, rejects with FencedError.
   */
  appendMessages(chatId: string, drafts: readonly MessageDraft[], options?: AppendOptions): Promise<AppendOutcome[]>;
  /**
   * Stored messages with seq > afterSeq, ascending, at most `limit` (none for
   * limit <= 0), with chatId and seq filled in. Trimmed messages are skipped.
   */
  readMessages(chatId: string, afterSeq: number, limit: number): Promise<Message[]>;
  /**
   * Moves the device's cursor to max(cursor, min(throughSeq, head, untilSeq))
   * (a removed device whose cursor reaches its untilSeq loses the cursor and
   * the bound, and the chat leaves its listDepartedChatIds) and drops
   * messages that every device with a cursor has now acked (also when this
   * cursor stood still: the sender-cursor rule may have moved the last one).
   * Returns the cursor. A device without a cursor in the chat, or an unknown
   * chat, gets undefined and changes nothing.
   */
  ackDelivered(chatId: string, deviceId: string, throughSeq: number): Promise<number | undefined>;
  /**
   * Many devices' acks of one chat in one atomic step (a large group's
   * members ack each message at once): each as ackDelivered, then one trim.
   * Results in order; a device acked twice ends at the higher cursor.
   */
  ackDeliveredMany(chatId: string, acks: readonly DeviceAck[]): Promise<Array<number | undefined>>;
  /** Every device cursor of the chat, in no particular order. */
  getCursors(chatId: string): Promise<DeviceCursor[]>;
  /**
   * One device's cursor and, for a removed member's device that has not yet
   * acked through its removal, the removal's seq; read in one atomic step.
   * Undefined without a cursor.
   */
  getDeliveryCursor(chatId: string, deviceId: string): Promise<DeliveryCursor | undefined>;
  /**
   * Groups the device was removed from and still has entries to receive in
   * (its cursor is below its removal's seq), in no particular order.
   */
  listDepartedChatIds(deviceId: string): Promise<string[]>;

  /**
   * Appends a group operation's message and applies its change, atomically
   * and durably: only when the chat's last operation hash is
   * `change.previousHash` (else rejects with GROUP_CHANGED and changes
   * nothing); the chat takes `change.record`, the operation becomes the head
   * of the chain (kept for readGroupOperations), added devices get a cursor at
   * seq - 1 (unless they have one), removed devices that have a cursor keep it
   * bounded by seq (untilSeq; listed by listDepartedChatIds), and the chat is
   * listed (or no longer) under added (removed) users. A message id
   * already in the chat is a duplicate, as in appendMessages (nothing
   * applied). NOT_FOUND without the chat; FencedError as appendMessages.
   */
  applyGroupOperation(
    chatId: string,
    draft: MessageDraft,
    change: GroupChange,
    options?: AppendOptions,
  ): Promise<AppendOutcome>;
  /** The group's operations with seq > afterSeq, ascending, at most `limit`, kept after trimming. */
  readGroupOperations(chatId: string, afterSeq: number, limit: number): Promise<Message[]>;

  /** Finishes every write already submitted, then releases the store. Idempotent. */
  close(): Promise<void>;
}
