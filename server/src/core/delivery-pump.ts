/**
 * Delivers one device's queue over one subscribed connection.
 *
 * A device's queue is, per chat, every stored message after the device's
 * delivery cursor. The pump pushes them in seq order and then follows live
 * messages, keeping per chat `sentThrough`, the last seq pushed here:
 * - a chat's messages go out strictly in seq order, each once per connection:
 *   a message is pushed only when its seq is sentThrough + 1;
 * - a live message that does not fit (a gap, a read in flight, the window or
 *   the sink full) marks the chat behind; the pump then reads the store from
 *   sentThrough, so nothing is buffered without bound and nothing is lost;
 * - at most `windowSize` messages are pushed but not acked (flow control).
 * - groups: the pump watches a group's events only while the device has a
 *   cursor in it, and forgets the group right after pushing the operation
 *   that removes its user: nothing after it is pushed. A removed device that
 *   was behind (offline, or reading) is still owed everything up to and
 *   including its removal: the store keeps its cursor bounded by the
 *   removal's seq (`untilSeq`) until it acked through it, and the pump
 *   delivers through that bound, also on a later connection (subscribe lists
 *   such groups). A read from the store is followed by a read of the cursor
 *   and its bound, so a removal that lands during the read stops it at the
 *   removal. Re-added meanwhile (`resumeSeq`), the device skips what was sent
 *   while it was out. Other members' receipts are not sent for groups
 *   (10,000 members would make every ack a broadcast).
 */
import {
  decodeOperation,
  GroupOperationError,
  ChatKind,
  GroupOperationKind,
  type Message,
  type Receipt,
  type ServerPush,
  type SignedGroupOperation,
} from "@remessenger/protocol";
import type { Store } from "../store/store.ts";
import type { Clock } from "./clock.ts";
import type { GroupWatch } from "./push-bus.ts";

/** Where pushes go: a WebSocket, a gRPC stream... The pump never buffers beyond it. */
export interface PushSink {
  push(push: ServerPush): void;
  /** False while the sink's own buffer is full; the pump waits for `onWritable`. */
  isWritable(): boolean;
}

export interface DeliveryPumpOptions {
  deviceId: string;
  /** The device's user: a group operation that removes it ends the group here. */
  userId?: string;
  /** Subscribes the group's events for this device's user (PushBus.watchGroup). */
  watchGroup?(chatId: string): GroupWatch;
  store: Store;
  sink: PushSink;
  clock: Clock;
  /** Unacked pushed messages allowed in flight. */
  windowSize?: number;
  /** Messages read from the store at a time. */
  pageSize?: number;
  onError(error: unknown): void;
}

interface ChatProgress {
  sentThrough: number;
  ackedThrough: number;
  isGroup: boolean;
  watch: GroupWatch | undefined;
  /** Removed from the group at this seq: push through it, nothing after (see DeliveryCursor). */
  untilSeq: number | undefined;
  /** Re-added after that removal: continue after this seq once `untilSeq` is pushed. */
  resumeSeq: number | undefined;
}

/**
 * Messages pushed to a device and not yet acked, at most. Clients are told this
 * number (proto/remessenger/v1/message.proto, ChatAck; docs/grpc.md): change
 * it there too.
 */
export const DEFAULT_WINDOW_SIZE = 1024;

/**
 * The users a group operation removes (REMOVE, LEAVE), decoded once per
 * operation object: every member device's pump is handed the same live
 * Message, and an ADD of 1,000 users decoded by 10,000 pumps would cost
 * ten million string decodes.
 */
const removedUsers = new WeakMap<SignedGroupOperation, ReadonlySet<string>>();
const NOBODY: ReadonlySet<string> = new Set();

function removedUsersOf(signed: SignedGroupOperation): ReadonlySet<string> {
  let users = removedUsers.get(signed);
  if (users === undefined) {
    try {
      const op = decodeOperation(signed);
      const isRemoval =
        op.kind === GroupOperationKind.GROUP_OPERATION_KIND_REMOVE ||
        op.kind === GroupOperationKind.GROUP_OPERATION_KIND_LEAVE;
      users = isRemoval ? new Set(op.userIds) : NOBODY;
    } catch (error) {
      // The server checked it before storing; an undecodable one removes nobody.
      if (!(error instanceof GroupOperationError)) throw error;
      users = NOBODY;
    }
    removedUsers.set(signed, users);
  }
  return users;
}
const DEFAULT_PAGE_SIZE = 256;

/** A seq after the device's removal from the group (and not after its re-addition): never pushed. */
function isWithheld(progress: ChatProgress, seq: number): boolean {
  const { untilSeq, resumeSeq } = progress;
  return untilSeq !== undefined && seq > untilSeq && (resumeSeq === undefined || seq <= resumeSeq);
}

export class DeliveryPump {
  private readonly options: DeliveryPumpOptions;
  private readonly windowSize: number;
  private readonly pageSize: number;
  private readonly chats = new Map<string, ChatProgress>();
  /** Chats with messages in the store that this connection has not been pushed yet. */
  private readonly behind = new Set<string>();
  /** Chats whose progress is being loaded from the store (first seen live). */
  private readonly loading = new Set<string>();
  /** Groups forgotten here after pushing the removal at this seq: nothing through it is pushed again. */
  private readonly removedAt = new Map<string, number>();
  private pumping: Promise<void> | undefined;
  /** The initial loading of the subscribed chats' cursors. */
  private loaded: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private isStopped = false;
  private isStarted = false;
  private isSynced = false;
  private pushedBySync = 0;
  /** Per chat, the head at subscribe time: the sync is complete when all are pushed. */
  private readonly syncTargets = new Map<string, number>();
  private onSynced: (() => void) | undefined;

  constructor(options: DeliveryPumpOptions) {
    this.options = options;
    this.windowSize = options.windowSize ?? DEFAULT_WINDOW_SIZE;
    this.pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  }

  /**
   * Pushes the whole queue of `chatIds`, then `receipts` (other devices'
   * cursors), then sync_complete; live events may interleave from the start.
   * Resolves when the sync is complete (or the pump stopped).
   */
  async start(chatIds: readonly string[]): Promise<void> {
    this.loaded = Promise.all(chatIds.map((chatId) => this.loadChat(chatId))).then(() => undefined);
    await this.loaded;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.onSynced = resolve;
    this.isStarted = true;
    this.schedule();
    this.checkSynced();
    await promise;
  }

  stop(): void {
    this.isStopped = true;
    for (const progress of this.chats.values()) progress.watch?.stop();
    this.onSynced?.();
  }

  /**
   * The device's user was removed from the group (the `left` event of another
   * node): read where the removal bounds this device, from the store, and
   * push through it. Nothing after the removal is pushed.
   */
  onLeft(chatId: string): void {
    if (this.isStopped || !this.chats.has(chatId)) return;
    this.behind.add(chatId);
    this.schedule();
  }

  /** Pushes nothing more of the chat on this connection. */
  private forget(chatId: string): void {
    const progress = this.chats.get(chatId);
    if (progress === undefined) return;
    this.chats.delete(chatId);
    this.behind.delete(chatId);
    this.syncTargets.delete(chatId);
    progress.watch?.stop();
    this.inFlight -= Math.max(0, progress.sentThrough - progress.ackedThrough);
    this.schedule();
  }

  /**
   * A message became durable in one of the device's chats. When this device
   * sent it and its cursor moved onto it (`senderCaughtUp`), the device has
   * it: nothing is pushed, the pump just moves past it.
   */
  onMessage(message: Message, senderCaughtUp = false): void {
    if (this.isStopped) return;
    const progress = this.chats.get(message.chatId);
    if (progress === undefined) {
      // Its removal was pushed here: only a later re-addition brings the group back.
      if (message.seq <= (this.removedAt.get(message.chatId) ?? 0)) return;
      // A chat new to this connection (created after subscribe): learn its cursor first.
      void this.loadChat(message.chatId).then(() => this.schedule());
      return;
    }
    if (isWithheld(progress, message.seq)) return;
    if (senderCaughtUp && message.senderDeviceId === this.options.deviceId) {
      this.onAcked(message.chatId, message.seq);
      return;
    }
    if (message.seq <= progress.sentThrough) return;
    if (
      !this.behind.has(message.chatId) &&
      this.pumping === undefined &&
      message.seq === progress.sentThrough + 1 &&
      this.hasRoom()
    ) {
      this.send(message, progress);
      return;
    }
    this.behind.add(message.chatId);
    this.schedule();
  }

  /** Some device's cursor moved. Ours opens the window; others' go to the client. */
  onReceipt(receipt: Receipt): void {
    if (this.isStopped) return;
    if (receipt.deviceId === this.options.deviceId) {
      this.onAcked(receipt.chatId, receipt.throughSeq);
      return;
    }
    this.options.sink.push({ push: { $case: "receipt", value: receipt } });
  }

  /** This device acked through `throughSeq` (on this connection or another). */
  onAcked(chatId: string, throughSeq: number): void {
    const progress = this.chats.get(chatId);
    if (progress === undefined || throughSeq <= progress.ackedThrough) return;
    const newlyAcked =
      Math.min(throughSeq, progress.sentThrough) - Math.min(progress.ackedThrough, progress.sentThrough);
    if (newlyAcked > 0) this.inFlight -= newlyAcked;
    progress.ackedThrough = throughSeq;
    // A cursor moved past what we sent (another connection of the device): skip ahead.
    if (throughSeq > progress.sentThrough) progress.sentThrough = throughSeq;
    this.passRemoval(chatId, progress);
    this.schedule();
  }

  /** Live events may have been lost: read every chat from the store again. */
  resync(): void {
    if (this.isStopped) return;
    for (const chatId of this.chats.keys()) this.behind.add(chatId);
    this.schedule();
  }

  /** The sink drained its buffer: continue where the pump stopped. */
  onWritable(): void {
    this.schedule();
  }

  /** Messages pushed and not yet acked, for tests and metrics. */
  get unacked(): number {
    return this.inFlight;
  }

  get synced(): boolean {
    return this.isSynced;
  }

  /** Resolves when no load or store read is running: whatever could be pushed, was. */
  async whenIdle(): Promise<void> {
    await this.loaded;
    while (this.pumping !== undefined) await this.pumping;
  }

  private hasRoom(): boolean {
    return this.inFlight < this.windowSize && this.options.sink.isWritable();
  }

  private send(message: Message, progress: ChatProgress): void {
    const { deviceId, sink } = this.options;
    // Each device sees only its own entry of the per-device ciphertexts. Without
    // any, every recipient gets the very same object, so an edge can encode it once.
    const value =
      message.devicePayloads.length === 0
        ? message
        : { ...message, devicePayloads: message.devicePayloads.filter((p) => p.deviceId === deviceId) };
    sink.push({ push: { $case: "message", value } });
    progress.sentThrough = message.seq;
    if (message.seq > progress.ackedThrough) this.inFlight += 1;
    if (!this.isSynced) this.pushedBySync += 1;
    if (progress.isGroup && progress.untilSeq === undefined && this.removesThisUser(message)) {
      progress.untilSeq = message.seq;
    }
    this.passRemoval(message.chatId, progress);
  }

  /**
   * Once the removal that bounds the chat here is pushed (or acked): forget
   * the group, or, re-added since, skip to the re-addition.
   */
  private passRemoval(chatId: string, progress: ChatProgress): void {
    const { untilSeq, resumeSeq } = progress;
    if (untilSeq === undefined || progress.sentThrough < untilSeq) return;
    if (resumeSeq === undefined) {
      this.removedAt.set(chatId, untilSeq);
      this.forget(chatId);
      return;
    }
    // The store moves the cursor over the skipped seqs with the ack of the
    // removal; count them as in flight so that ack frees exactly the window.
    const skipped = Math.max(0, resumeSeq - progress.sentThrough);
    if (progress.ackedThrough < resumeSeq) this.inFlight += skipped;
    progress.sentThrough = Math.max(progress.sentThrough, resumeSeq);
    progress.untilSeq = undefined;
    progress.resumeSeq = undefined;
  }

  /** Whether the message is a group operation that takes this device's user out of the group. */
  private removesThisUser(message: Message): boolean {
    const { userId } = this.options;
    if (message.groupOperation === undefined || userId === undefined) return false;
    return removedUsersOf(message.groupOperation).has(userId);
  }

  private async loadChat(chatId: string): Promise<void> {
    if (this.chats.has(chatId) || this.loading.has(chatId)) return;
    this.loading.add(chatId);
    let watch: GroupWatch | undefined;
    try {
      const chat = await this.options.store.getChatHead(chatId);
      if (chat === undefined) return;
      const isGroup = chat.kind === ChatKind.CHAT_KIND_GROUP;
      // A group's events come on its own channel: listen before reading, so nothing slips between.
      watch = isGroup ? this.options.watchGroup?.(chatId) : undefined;
      await watch?.ready;
      const cursor = await this.options.store.getDeliveryCursor(chatId, this.options.deviceId);
      if (cursor === undefined || this.isStopped) return; // not a recipient here
      let { throughSeq } = cursor;
      let untilSeq = cursor.untilSeq;
      const pushedThrough = this.removedAt.get(chatId);
      if (untilSeq !== undefined && pushedThrough !== undefined && pushedThrough >= untilSeq) {
        // This connection pushed the removal already; only a re-addition is left to follow.
        if (cursor.resumeSeq === undefined) return;
        throughSeq = Math.max(throughSeq, cursor.resumeSeq);
        untilSeq = undefined;
      }
      this.removedAt.delete(chatId);
      const resumeSeq = untilSeq === undefined ? undefined : cursor.resumeSeq;
      // Always start behind: a message may have landed between the reads.
      this.chats.set(chatId, {
        sentThrough: throughSeq,
        ackedThrough: throughSeq,
        isGroup,
        watch,
        untilSeq,
        resumeSeq,
      });
      watch = undefined;
      this.behind.add(chatId);
      const target =
        untilSeq !== undefined && resumeSeq === undefined ? Math.min(chat.headSeq, untilSeq) : chat.headSeq;
      if (!this.isStarted) this.syncTargets.set(chatId, target);
    } catch (error) {
      this.options.onError(error);
    } finally {
      watch?.stop();
      this.loading.delete(chatId);
    }
  }

  /** Starts a pump run when some chat is behind; acks alone never cost a store read. */
  private schedule(): void {
    if (this.isStopped || this.pumping !== undefined) return;
    if (this.behind.size === 0) {
      this.checkSynced();
      return;
    }
    this.pumping = this.pump();
  }

  /** Reads behind chats from the store until all caught up or no room is left. */
  private async pump(): Promise<void> {
    await Promise.resolve(); // let `schedule` record this run before it reads anything
    try {
      for (;;) {
        if (this.isStopped || !this.hasRoom()) return;
        if (this.behind.size === 0) return;
        for (const chatId of [...this.behind]) {
          if (this.isStopped || !this.hasRoom()) return;
          const progress = this.chats.get(chatId);
          // Off the list before the read: a live message landing during it puts the chat back.
          this.behind.delete(chatId);
          if (progress === undefined) continue;
          const limit = Math.min(this.pageSize, this.windowSize - this.inFlight);
          let messages: Message[];
          try {
            messages = await this.options.store.readMessages(chatId, progress.sentThrough, limit);
            // Removed from the group while reading: what was read may follow the removal.
            if (progress.isGroup && !(await this.boundAfterRead(chatId, progress))) continue;
          } catch (error) {
            this.behind.add(chatId); // retried on the next event
            throw error;
          }
          for (const message of messages) {
            if (this.isStopped) return;
            if (this.chats.get(chatId) !== progress) break; // forgotten: its removal was just pushed
            if (message.seq === progress.sentThrough + 1 && !isWithheld(progress, message.seq)) {
              this.send(message, progress);
            }
          }
          // A full page means there may be more; so does a live message that came meanwhile.
          if (messages.length === limit && this.chats.get(chatId) === progress) this.behind.add(chatId);
        }
      }
    } catch (error) {
      this.options.onError(error);
    } finally {
      this.pumping = undefined;
      this.checkSynced();
    }
  }

  /**
   * After a read of a group: the device's cursor and removal bound as the
   * store has them now. False when the chat was forgotten (no cursor: the
   * device acked through its removal, on this connection or another).
   */
  private async boundAfterRead(chatId: string, progress: ChatProgress): Promise<boolean> {
    const cursor = await this.options.store.getDeliveryCursor(chatId, this.options.deviceId);
    if (this.chats.get(chatId) !== progress) return false;
    if (cursor === undefined) {
      this.forget(chatId);
      return false;
    }
    // Acked further on another connection (a re-added device's cursor may have jumped): never push below it.
    if (cursor.throughSeq > progress.sentThrough) progress.sentThrough = cursor.throughSeq;
    if (cursor.untilSeq !== undefined && progress.untilSeq === undefined) progress.untilSeq = cursor.untilSeq;
    if (progress.untilSeq === cursor.untilSeq) progress.resumeSeq = cursor.resumeSeq;
    this.passRemoval(chatId, progress);
    return this.chats.get(chatId) === progress;
  }

  /** Once every chat's queue as of subscribe time is out: receipts, then sync_complete. */
  private checkSynced(): void {
    if (!this.isStarted || this.isSynced || this.isStopped) return;
    for (const [chatId, head] of this.syncTargets) {
      const progress = this.chats.get(chatId);
      if (progress !== undefined && progress.sentThrough < head) return;
    }
    this.isSynced = true;
    void this.finishSync();
  }

  private async finishSync(): Promise<void> {
    const { store, deviceId, sink, clock } = this.options;
    try {
      const owners = new Map<string, string | undefined>();
      for (const chatId of this.syncTargets.keys()) {
        if (this.chats.get(chatId)?.isGroup !== false) continue;
        for (const cursor of await store.getCursors(chatId)) {
          if (cursor.deviceId === deviceId || cursor.throughSeq === 0) continue;
          if (!owners.has(cursor.deviceId))
            owners.set(cursor.deviceId, (await store.getDevice(cursor.deviceId))?.userId);
          const userId = owners.get(cursor.deviceId);
          if (userId === undefined || this.isStopped) continue;
          sink.push({
            push: {
              $case: "receipt",
              value: { chatId, userId, deviceId: cursor.deviceId, throughSeq: cursor.throughSeq },
            },
          });
        }
      }
      if (this.isStopped) return;
      sink.push({ push: { $case: "syncComplete", value: { pushed: this.pushedBySync, serverTimeMs: clock.nowMs() } } });
    } catch (error) {
      this.options.onError(error);
    } finally {
      this.onSynced?.();
    }
  }
}
