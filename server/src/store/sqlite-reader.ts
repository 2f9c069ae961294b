/**
 * The embedded store's queries. Runs on any connection: the main thread's
 * read-only one, and the writer's own inside its transactions. Every query is a
 * single statement or reads rows that never change once written (a chat's
 * members), so each answer is consistent without an explicit read transaction.
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { ChatKind, type Message } from "@remessenger/protocol";
import { decodeMessageBody } from "./message-body.ts";
import { blobColumn, integerColumn, textColumn, type Row } from "./sqlite-rows.ts";
import type { ChatHead, ChatState, DeliveryCursor, DeviceCursor, DeviceRecord, UserRecord } from "./store.ts";

export class SqliteReader {
  private readonly selectUser: StatementSync;
  private readonly selectDevice: StatementSync;
  private readonly selectUserDevices: StatementSync;
  private readonly selectChat: StatementSync;
  private readonly selectChatHead: StatementSync;
  private readonly selectChatMembers: StatementSync;
  private readonly selectUserChatIds: StatementSync;
  private readonly selectMessages: StatementSync;
  private readonly selectCursors: StatementSync;
  private readonly selectOperations: StatementSync;
  private readonly selectDeliveryCursor: StatementSync;
  private readonly selectDepartedChatIds: StatementSync;

  constructor(db: DatabaseSync) {
    this.selectUser = db.prepare("SELECT user_id, display_name, created_at_ms FROM users WHERE user_id = ?");
    this.selectDevice = db.prepare(
      "SELECT device_id, user_id, identity_key, created_at_ms FROM devices WHERE device_id = ?",
    );
    this.selectUserDevices = db.prepare(
      "SELECT device_id, user_id, identity_key, created_at_ms FROM devices WHERE user_id = ? ORDER BY created_at_ms, device_id",
    );
    this.selectChat = db.prepare(
      `SELECT chat_key, chat_id, kind, title, created_by_user_id, created_at_ms, head_seq, epoch, last_op_hash, last_op_seq
       FROM chats WHERE chat_id = ?`,
    );
    this.selectChatHead = db.prepare("SELECT kind, head_seq FROM chats WHERE chat_id = ?");
    this.selectChatMembers = db.prepare(
      "SELECT user_id, is_admin FROM chat_members WHERE chat_key = ? ORDER BY position",
    );
    this.selectUserChatIds = db.prepare(
      "SELECT DISTINCT chats.chat_id FROM chat_members JOIN chats USING (chat_key) WHERE chat_members.user_id = ?",
    );
    this.selectMessages = db.prepare(
      `SELECT seq, body FROM messages
       WHERE chat_key = (SELECT chat_key FROM chats WHERE chat_id = ?) AND seq > ? ORDER BY seq LIMIT ?`,
    );
    this.selectCursors = db.prepare(
      `SELECT device_id, through_seq FROM cursors
       WHERE chat_key = (SELECT chat_key FROM chats WHERE chat_id = ?)`,
    );
    this.selectDeliveryCursor = db.prepare(
      `SELECT cursors.through_seq, departures.until_seq, departures.resume_seq FROM cursors
       LEFT JOIN departures USING (chat_key, device_id)
       WHERE cursors.chat_key = (SELECT chat_key FROM chats WHERE chat_id = ?) AND cursors.device_id = ?`,
    );
    this.selectDepartedChatIds = db.prepare(
      "SELECT chats.chat_id FROM departures JOIN chats USING (chat_key) WHERE departures.device_id = ?",
    );
    this.selectOperations = db.prepare(
      `SELECT seq, body FROM group_operations
       WHERE chat_key = (SELECT chat_key FROM chats WHERE chat_id = ?) AND seq > ? ORDER BY seq LIMIT ?`,
    );
  }

  getUser(userId: string): UserRecord | undefined {
    const row = this.selectUser.get(userId);
    if (row === undefined) return undefined;
    return {
      userId: textColumn(row, "user_id"),
      displayName: textColumn(row, "display_name"),
      createdAtMs: integerColumn(row, "created_at_ms"),
    };
  }

  getDevice(deviceId: string): DeviceRecord | undefined {
    const row = this.selectDevice.get(deviceId);
    return row === undefined ? undefined : toDevice(row);
  }

  listUserDevices(userId: string): DeviceRecord[] {
    return this.selectUserDevices.all(userId).map(toDevice);
  }

  getChat(chatId: string): ChatState | undefined {
    const row = this.selectChat.get(chatId);
    if (row === undefined) return undefined;
    // The kind was written from a ChatKind and is never rewritten.
    const kind = integerColumn(row, "kind") as ChatKind;
    const members = this.selectChatMembers.all(integerColumn(row, "chat_key"));
    const chat: ChatState = {
      chatId: textColumn(row, "chat_id"),
      kind,
      title: textColumn(row, "title"),
      memberUserIds: members.map((member) => textColumn(member, "user_id")),
      createdByUserId: textColumn(row, "created_by_user_id"),
      createdAtMs: integerColumn(row, "created_at_ms"),
      headSeq: integerColumn(row, "head_seq"),
    };
    if (kind !== ChatKind.CHAT_KIND_GROUP) return chat;
    const hash = row["last_op_hash"];
    return {
      ...chat,
      adminUserIds: members
        .filter((member) => integerColumn(member, "is_admin") === 1)
        .map((member) => textColumn(member, "user_id"))
        .sort(),
      epoch: integerColumn(row, "epoch"),
      lastOperationHash: hash instanceof Uint8Array ? hash : new Uint8Array(0),
      lastOperationSeq: integerColumn(row, "last_op_seq"),
    };
  }

  getChatHead(chatId: string): ChatHead | undefined {
    const row = this.selectChatHead.get(chatId);
    // The kind was written from a ChatKind and is never rewritten.
    return row === undefined
      ? undefined
      : { kind: integerColumn(row, "kind") as ChatKind, headSeq: integerColumn(row, "head_seq") };
  }

  listUserChatIds(userId: string): string[] {
    return this.selectUserChatIds.all(userId).map((row) => textColumn(row, "chat_id"));
  }

  readMessages(chatId: string, afterSeq: number, limit: number): Message[] {
    if (limit <= 0) return [];
    return this.selectMessages
      .all(chatId, afterSeq, limit)
      .map((row) => decodeMessageBody(chatId, integerColumn(row, "seq"), blobColumn(row, "body")));
  }

  getDeliveryCursor(chatId: string, deviceId: string): DeliveryCursor | undefined {
    const row = this.selectDeliveryCursor.get(chatId, deviceId);
    if (row === undefined) return undefined;
    const throughSeq = integerColumn(row, "through_seq");
    const untilSeq = row["until_seq"];
    if (typeof untilSeq !== "number") return { throughSeq };
    const resumeSeq = row["resume_seq"];
    return typeof resumeSeq === "number" ? { throughSeq, untilSeq, resumeSeq } : { throughSeq, untilSeq };
  }

  listDepartedChatIds(deviceId: string): string[] {
    return this.selectDepartedChatIds.all(deviceId).map((row) => textColumn(row, "chat_id"));
  }

  readGroupOperations(chatId: string, afterSeq: number, limit: number): Message[] {
    if (limit <= 0) return [];
    return this.selectOperations
      .all(chatId, afterSeq, limit)
      .map((row) => decodeMessageBody(chatId, integerColumn(row, "seq"), blobColumn(row, "body")));
  }

  getCursors(chatId: string): DeviceCursor[] {
    return this.selectCursors.all(chatId).map((row) => ({
      deviceId: textColumn(row, "device_id"),
      throughSeq: integerColumn(row, "through_seq"),
    }));
  }
}

function toDevice(row: Row): DeviceRecord {
  return {
    deviceId: textColumn(row, "device_id"),
    userId: textColumn(row, "user_id"),
    identityKey: blobColumn(row, "identity_key"),
    createdAtMs: integerColumn(row, "created_at_ms"),
  };
}
