/**
 * The embedded store's write side: applies a batch of write operations as ONE
 * transaction on the single writer connection (group commit; see
 * group-commit.ts for how batches form).
 *
 * Each operation runs inside its own SAVEPOINT, so one that fails (an unknown
 * chat, a taken user id) is rolled back alone and reported alone, while the
 * others in the batch still commit. Nothing is reported before COMMIT returned,
 * and with synchronous=FULL that means the batch is on disk.
 *
 * Invariants kept here: a chat's seqs are gapless (head_seq is read and written
 * only in this transaction); an id already in message_ids gets its first seq
 * back, also when it repeats inside one batch; message_ids rows are never
 * deleted, so idempotency outlives trimming; a cursor never moves backward or
 * past the head; a message is deleted only once every cursor in its chat passed it.
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { equalBytes, RemessengerError, ErrorCode } from "@remessenger/protocol";
import type { LinkedDevice, PreKeyCounts, PreKeyUpload, TakenBundle } from "./device-keys.ts";
import { SqliteDeviceKeyWriter } from "./sqlite-device-keys.ts";
import { SqliteReader } from "./sqlite-reader.ts";
import { blobColumn, integerColumn, textColumn } from "./sqlite-rows.ts";
import type {
  AppendOutcome,
  ChatRecord,
  ChatState,
  DeviceAck,
  DeviceRecord,
  GroupChange,
  UserRecord,
} from "./store.ts";

export type WriteOp =
  | { kind: "loadOrCreateServerSecret"; candidate: Uint8Array }
  | { kind: "createUser"; user: UserRecord; device: DeviceRecord }
  | { kind: "createChat"; chat: ChatRecord; memberDeviceIds: readonly string[] }
  | { kind: "appendMessages"; chatId: string; drafts: readonly EncodedDraft[] }
  | { kind: "ackDelivered"; chatId: string; deviceId: string; throughSeq: number }
  | { kind: "ackDeliveredMany"; chatId: string; acks: DeviceAck[] }
  | { kind: "publishPreKeys"; deviceId: string; upload: PreKeyUpload }
  | { kind: "takePreKeyBundle"; deviceId: string }
  | { kind: "addDevice"; device: LinkedDevice }
  | { kind: "addChatCursor"; chatId: string; deviceId: string }
  | { kind: "applyGroupOperation"; chatId: string; draft: EncodedDraft; change: GroupChange };

/**
 * A draft as it crosses to the writer: the body already encoded on the calling
 * thread. Cloning one byte array is as cheap as cloning the draft's object
 * graph, and it takes the encoding off the writer, which is the bottleneck.
 */
export interface EncodedDraft {
  messageId: Uint8Array;
  senderDeviceId: string;
  body: Uint8Array;
}

/** What each kind of operation resolves to. */
export interface WriteResults {
  loadOrCreateServerSecret: Uint8Array;
  createUser: undefined;
  createChat: { chat: ChatState; created: boolean };
  appendMessages: AppendOutcome[];
  ackDelivered: number | undefined;
  ackDeliveredMany: Array<number | undefined>;
  publishPreKeys: PreKeyCounts;
  takePreKeyBundle: TakenBundle | undefined;
  addDevice: undefined;
  addChatCursor: boolean;
  applyGroupOperation: AppendOutcome;
}

/** An error as it crosses the worker boundary (structured clone drops classes). */
export interface WireError {
  code: ErrorCode | undefined;
  message: string;
}

export type WireSettlement = { ok: true; value: unknown } | { ok: false; error: WireError };

export class SqliteWriter {
  private readonly db: DatabaseSync;
  private readonly reader: SqliteReader;
  private readonly deviceKeys: SqliteDeviceKeyWriter;
  private readonly insertSecret: StatementSync;
  private readonly selectSecret: StatementSync;
  private readonly insertUser: StatementSync;
  private readonly insertDevice: StatementSync;
  private readonly insertChat: StatementSync;
  private readonly insertMember: StatementSync;
  private readonly insertCursor: StatementSync;
  private readonly selectHead: StatementSync;
  private readonly updateHead: StatementSync;
  private readonly insertMessageId: StatementSync;
  private readonly selectMessageId: StatementSync;
  private readonly insertMessage: StatementSync;
  private readonly selectCursor: StatementSync;
  private readonly updateCursor: StatementSync;
  private readonly selectMinCursor: StatementSync;
  private readonly deleteMessagesThrough: StatementSync;
  private readonly selectChainHead: StatementSync;
  private readonly updateGroup: StatementSync;
  private readonly deleteMembers: StatementSync;
  private readonly insertOperation: StatementSync;
  private readonly insertCursorAt: StatementSync;
  private readonly deleteCursor: StatementSync;
  private readonly selectAckCursor: StatementSync;
  private readonly selectDeparture: StatementSync;
  private readonly insertDeparture: StatementSync;
  private readonly updateDepartureResume: StatementSync;
  private readonly deleteDeparture: StatementSync;

  constructor(db: DatabaseSync) {
    this.db = db;
    this.reader = new SqliteReader(db);
    this.deviceKeys = new SqliteDeviceKeyWriter(db);
    this.insertSecret = db.prepare("INSERT INTO server_secret (id, secret) VALUES (1, ?) ON CONFLICT (id) DO NOTHING");
    this.selectSecret = db.prepare("SELECT secret FROM server_secret WHERE id = 1");
    this.insertUser = db.prepare("INSERT INTO users (user_id, display_name, created_at_ms) VALUES (?, ?, ?)");
    this.insertDevice = db.prepare(
      "INSERT INTO devices (device_id, user_id, identity_key, created_at_ms) VALUES (?, ?, ?, ?)",
    );
    this.insertChat = db.prepare(
      "INSERT INTO chats (chat_id, kind, title, created_by_user_id, created_at_ms, head_seq) VALUES (?, ?, ?, ?, ?, 0)",
    );
    this.insertMember = db.prepare(
      "INSERT INTO chat_members (chat_key, position, user_id, is_admin) VALUES (?, ?, ?, ?)",
    );
    this.insertCursor = db.prepare(
      "INSERT INTO cursors (chat_key, device_id, through_seq) VALUES (?, ?, 0) ON CONFLICT DO NOTHING",
    );
    this.selectHead = db.prepare("SELECT chat_key, head_seq FROM chats WHERE chat_id = ?");
    this.updateHead = db.prepare("UPDATE chats SET head_seq = ? WHERE chat_key = ?");
    this.insertMessageId = db.prepare(
      "INSERT INTO message_ids (chat_key, message_id, seq, sender_device_id) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    this.selectMessageId = db.prepare(
      "SELECT seq, sender_device_id FROM message_ids WHERE chat_key = ? AND message_id = ?",
    );
    this.insertMessage = db.prepare("INSERT INTO messages (chat_key, seq, body) VALUES (?, ?, ?)");
    this.selectCursor = db.prepare("SELECT through_seq FROM cursors WHERE chat_key = ? AND device_id = ?");
    this.updateCursor = db.prepare("UPDATE cursors SET through_seq = ? WHERE chat_key = ? AND device_id = ?");
    this.selectMinCursor = db.prepare("SELECT MIN(through_seq) AS through_seq FROM cursors WHERE chat_key = ?");
    this.deleteMessagesThrough = db.prepare("DELETE FROM messages WHERE chat_key = ? AND seq <= ?");
    this.selectChainHead = db.prepare("SELECT chat_key, last_op_hash FROM chats WHERE chat_id = ?");
    this.updateGroup = db.prepare(
      "UPDATE chats SET title = ?, epoch = ?, last_op_hash = ?, last_op_seq = ? WHERE chat_key = ?",
    );
    this.deleteMembers = db.prepare("DELETE FROM chat_members WHERE chat_key = ?");
    this.insertOperation = db.prepare("INSERT INTO group_operations (chat_key, seq, body) VALUES (?, ?, ?)");
    this.insertCursorAt = db.prepare(
      "INSERT INTO cursors (chat_key, device_id, through_seq) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    );
    this.deleteCursor = db.prepare("DELETE FROM cursors WHERE chat_key = ? AND device_id = ?");
    this.selectAckCursor = db.prepare(
      `SELECT cursors.through_seq, departures.until_seq, departures.resume_seq FROM cursors
       LEFT JOIN departures USING (chat_key, device_id)
       WHERE cursors.chat_key = ? AND cursors.device_id = ?`,
    );
    this.selectDeparture = db.prepare("SELECT resume_seq FROM departures WHERE chat_key = ? AND device_id = ?");
    this.insertDeparture = db.prepare(
      "INSERT INTO departures (chat_key, device_id, until_seq, resume_seq) VALUES (?, ?, ?, NULL)",
    );
    this.updateDepartureResume = db.prepare(
      "UPDATE departures SET resume_seq = ? WHERE chat_key = ? AND device_id = ?",
    );
    this.deleteDeparture = db.prepare("DELETE FROM departures WHERE chat_key = ? AND device_id = ?");
  }

  /**
   * Applies `ops` in one transaction and reports each one's outcome. Throws
   * (and rolls everything back) only when the transaction itself fails.
   */
  applyBatch(ops: readonly WriteOp[]): WireSettlement[] {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const settlements = ops.map((op) => this.applyIsolated(op));
      this.db.exec("COMMIT");
      return settlements;
    } catch (error) {
      if (this.db.isTransaction) this.db.exec("ROLLBACK");
      throw error;
    }
  }

  private applyIsolated(op: WriteOp): WireSettlement {
    this.db.exec("SAVEPOINT op");
    try {
      const value = this.apply(op);
      this.db.exec("RELEASE op");
      return { ok: true, value };
    } catch (error) {
      this.db.exec("ROLLBACK TO op");
      this.db.exec("RELEASE op");
      return { ok: false, error: toWireError(error) };
    }
  }

  private apply(op: WriteOp): WriteResults[WriteOp["kind"]] {
    switch (op.kind) {
      case "loadOrCreateServerSecret":
        return this.loadOrCreateServerSecret(op.candidate);
      case "createUser":
        this.createUser(op.user, op.device);
        return undefined;
      case "createChat":
        return this.createChat(op.chat, op.memberDeviceIds);
      case "appendMessages":
        return this.appendMessages(op.chatId, op.drafts);
      case "ackDelivered":
        return this.ackDelivered(op.chatId, op.deviceId, op.throughSeq);
      case "ackDeliveredMany":
        return this.ackDeliveredMany(op.chatId, op.acks);
      case "publishPreKeys":
        return this.deviceKeys.publishPreKeys(op.deviceId, op.upload);
      case "takePreKeyBundle":
        return this.deviceKeys.takePreKeyBundle(op.deviceId);
      case "addDevice":
        this.deviceKeys.addDevice(op.device);
        return undefined;
      case "addChatCursor":
        return this.deviceKeys.addChatCursor(op.chatId, op.deviceId);
      case "applyGroupOperation":
        return this.applyGroupOperation(op.chatId, op.draft, op.change);
    }
  }

  private loadOrCreateServerSecret(candidate: Uint8Array): Uint8Array {
    this.insertSecret.run(candidate);
    const row = this.selectSecret.get();
    if (row === undefined) throw new Error("server secret vanished inside its own transaction");
    return blobColumn(row, "secret");
  }

  private createUser(user: UserRecord, device: DeviceRecord): void {
    if (this.reader.getUser(user.userId) !== undefined) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, `user ${user.userId} exists`);
    }
    if (this.reader.getDevice(device.deviceId) !== undefined) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, `device ${device.deviceId} exists`);
    }
    this.insertUser.run(user.userId, user.displayName, user.createdAtMs);
    this.insertDevice.run(device.deviceId, user.userId, device.identityKey, device.createdAtMs);
  }

  private createChat(chat: ChatRecord, memberDeviceIds: readonly string[]): { chat: ChatState; created: boolean } {
    const existing = this.reader.getChat(chat.chatId);
    if (existing !== undefined) return { chat: existing, created: false };
    const { lastInsertRowid: chatKey } = this.insertChat.run(
      chat.chatId,
      chat.kind,
      chat.title,
      chat.createdByUserId,
      chat.createdAtMs,
    );
    this.insertMembers(chatKey, chat);
    for (const deviceId of memberDeviceIds) this.insertCursor.run(chatKey, deviceId);
    const created = this.reader.getChat(chat.chatId);
    if (created === undefined) throw new Error("chat vanished inside its own transaction");
    return { chat: created, created: true };
  }

  private insertMembers(chatKey: number | bigint, chat: ChatRecord): void {
    const admins = new Set(chat.adminUserIds ?? []);
    chat.memberUserIds.forEach((userId, position) =>
      this.insertMember.run(chatKey, position, userId, admins.has(userId) ? 1 : 0),
    );
  }

  private applyGroupOperation(chatId: string, draft: EncodedDraft, change: GroupChange): AppendOutcome {
    const head = this.selectChainHead.get(chatId);
    if (head === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `chat ${chatId} not found`);
    const chatKey = integerColumn(head, "chat_key");
    const stored = head["last_op_hash"];
    // A repeat of the operation's message id answers like any duplicate, before the chain check.
    const first = this.selectMessageId.get(chatKey, draft.messageId);
    if (first !== undefined) {
      return {
        kind: "duplicate",
        seq: integerColumn(first, "seq"),
        senderDeviceId: textColumn(first, "sender_device_id"),
      };
    }
    if (!equalBytes(stored instanceof Uint8Array ? stored : new Uint8Array(0), change.previousHash)) {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_GROUP_CHANGED,
        "the group changed: this operation does not follow its last one; fetch the group and retry",
      );
    }
    const [appended] = this.appendMessages(chatId, [draft]);
    if (appended?.kind !== "appended") throw new Error("group operation was not appended");
    const { seq } = appended;
    this.updateGroup.run(change.record.title, change.record.epoch ?? 0, change.operationHash, seq, chatKey);
    this.deleteMembers.run(chatKey);
    this.insertMembers(chatKey, change.record);
    this.insertOperation.run(chatKey, seq, draft.body);
    for (const deviceId of change.addedDeviceIds) {
      // Still owed entries from before an earlier removal: continue here once through them.
      if (this.selectDeparture.get(chatKey, deviceId) === undefined)
        this.insertCursorAt.run(chatKey, deviceId, seq - 1);
      else this.updateDepartureResume.run(seq - 1, chatKey, deviceId);
    }
    for (const deviceId of change.removedDeviceIds) this.depart(chatKey, deviceId, seq);
    return appended;
  }

  /**
   * Bounds a removed device's cursor by its removal at `seq` (it is owed the
   * entries through it). Already through it (a LEAVE's sender): the cursor
   * goes now. Removed again while still owed entries before a re-addition:
   * one bound is kept, the earlier one, so nothing after a removal leaks (the
   * entries between the re-addition and this removal are not delivered).
   */
  private depart(chatKey: number, deviceId: string, seq: number): void {
    const row = this.selectAckCursor.get(chatKey, deviceId);
    if (row === undefined) return;
    if (row["until_seq"] !== null) {
      this.updateDepartureResume.run(null, chatKey, deviceId);
      return;
    }
    if (integerColumn(row, "through_seq") >= seq) this.deleteCursor.run(chatKey, deviceId);
    else this.insertDeparture.run(chatKey, deviceId, seq);
  }

  private appendMessages(chatId: string, drafts: readonly EncodedDraft[]): AppendOutcome[] {
    const chatRow = this.selectHead.get(chatId);
    if (chatRow === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `chat ${chatId} not found`);
    const chatKey = integerColumn(chatRow, "chat_key");
    const firstHead = integerColumn(chatRow, "head_seq");
    let head = firstHead;
    // Sender cursors are followed in memory and written once per call: one
    // UPDATE per message was a quarter of the append's SQL time.
    const senderCursors = new Map<string, { through: number | undefined; isMoved: boolean }>();
    const outcomes: AppendOutcome[] = [];
    for (const draft of drafts) {
      // Claiming the id first makes the common case (a new id) one statement.
      const claimed = this.insertMessageId.run(chatKey, draft.messageId, head + 1, draft.senderDeviceId);
      if (claimed.changes === 0) {
        const first = this.selectMessageId.get(chatKey, draft.messageId);
        if (first === undefined) throw new Error("message id conflicted but is not stored");
        outcomes.push({
          kind: "duplicate",
          seq: integerColumn(first, "seq"),
          senderDeviceId: textColumn(first, "sender_device_id"),
        });
        continue;
      }
      head += 1;
      this.insertMessage.run(chatKey, head, draft.body);
      let sender = senderCursors.get(draft.senderDeviceId);
      if (sender === undefined) {
        const row = this.selectCursor.get(chatKey, draft.senderDeviceId);
        sender = { through: row === undefined ? undefined : integerColumn(row, "through_seq"), isMoved: false };
        senderCursors.set(draft.senderDeviceId, sender);
      }
      const senderCaughtUp = sender.through === head - 1;
      if (senderCaughtUp) {
        sender.through = head;
        sender.isMoved = true;
      }
      outcomes.push({ kind: "appended", seq: head, senderCaughtUp });
    }
    for (const [deviceId, sender] of senderCursors) {
      if (sender.isMoved && sender.through !== undefined) this.updateCursor.run(sender.through, chatKey, deviceId);
    }
    if (head !== firstHead) this.updateHead.run(head, chatKey);
    return outcomes;
  }

  private ackDelivered(chatId: string, deviceId: string, throughSeq: number): number | undefined {
    return this.ackDeliveredMany(chatId, [{ deviceId, throughSeq }])[0];
  }

  private ackDeliveredMany(chatId: string, acks: readonly DeviceAck[]): Array<number | undefined> {
    const chatRow = this.selectHead.get(chatId);
    if (chatRow === undefined) return acks.map(() => undefined);
    const chatKey = integerColumn(chatRow, "chat_key");
    const head = integerColumn(chatRow, "head_seq");
    const results = acks.map(({ deviceId, throughSeq }) => {
      const cursorRow = this.selectAckCursor.get(chatKey, deviceId);
      if (cursorRow === undefined) return undefined;
      const cursor = integerColumn(cursorRow, "through_seq");
      const untilSeq = cursorRow["until_seq"];
      const bound = typeof untilSeq === "number" ? untilSeq : head;
      let next = Math.max(cursor, Math.min(throughSeq, head, bound));
      if (typeof untilSeq === "number" && next >= untilSeq) {
        // A removed device has everything it was owed: its bound goes, and its cursor unless re-added.
        this.deleteDeparture.run(chatKey, deviceId);
        const resumeSeq = cursorRow["resume_seq"];
        if (typeof resumeSeq !== "number") {
          this.deleteCursor.run(chatKey, deviceId);
          return next;
        }
        next = Math.max(next, resumeSeq);
      }
      if (next !== cursor) this.updateCursor.run(next, chatKey, deviceId);
      return next;
    });
    // Trim even when no cursor moved: a sender's cursor moved by its own
    // append may have been the last one holding a message back.
    const minRow = this.selectMinCursor.get(chatKey);
    const everyoneThrough = minRow === undefined ? 0 : integerColumn(minRow, "through_seq");
    if (everyoneThrough > 0) this.deleteMessagesThrough.run(chatKey, everyoneThrough);
    return results;
  }
}

export function toWireError(error: unknown): WireError {
  if (error instanceof RemessengerError) return { code: error.code, message: error.message };
  return { code: undefined, message: error instanceof Error ? error.message : String(error) };
}

/** Rebuilds the error on the main thread; codeless errors are the server's own faults. */
export function fromWireError(error: WireError): Error {
  if (error.code !== undefined) return new RemessengerError(error.code, error.message);
  return new Error(`sqlite writer: ${error.message}`);
}
