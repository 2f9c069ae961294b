/**
 * A chat's actor: the one owner of the chat's appends on this node. Sends wait
 * in its mailbox in arrival order; the actor takes everything waiting as one
 * batch, has the store append it atomically (which assigns the gapless seqs and
 * makes repeated message ids harmless), answers each sender, and only then
 * publishes the new messages. So:
 * - a seq is given out only once the message is durable;
 * - messages are published per chat in seq order, each once;
 * - one round trip to the store serves every send that arrived meanwhile.
 *
 * Groups: a membership operation (core/group-change.ts checks it) is a send
 * too, so messages and changes share one sequence. A batch is cut at each
 * operation: the messages before it are appended, then the operation alone
 * (applied atomically with its membership), then the messages after it are
 * checked against the new members. A group message is published once for the
 * whole group (PushBus.publishToGroup), whatever its size.
 */
import {
  RemessengerError,
  operationHash,
  equalBytes,
  decodeOperation,
  ChatKind,
  ErrorCode,
  GroupOperationKind,
  Message,
} from "@remessenger/protocol";
import { type AppendOutcome, type ChatState, FencedError, type MessageDraft, type Store } from "../store/store.ts";
import type { Clock } from "./clock.ts";
import { type PlannedChange, planGroupChange } from "./group-change.ts";
import { NotOwnerError } from "./lease.ts";
import { shardOf } from "./shard-placement.ts";
import type { PushBus } from "./push-bus.ts";

/** Sends waiting in one chat's mailbox; beyond it, senders are told to retry. */
export const MAX_MAILBOX_DEPTH = 10_000;
/** Messages handed to the store in one append. */
export const MAX_APPEND_BATCH = 512;

export interface SendOutcome {
  seq: number;
  duplicate: boolean;
  serverTimeMs: number;
}

interface PendingSend {
  draft: MessageDraft;
  resolve(outcome: SendOutcome): void;
  reject(error: unknown): void;
}

export interface ChatActorDeps {
  store: Store;
  bus: PushBus;
  clock: Clock;
  /** Called when a batch fails in the store, for logs; the senders get UNAVAILABLE. */
  onStoreError(chatId: string, error: unknown): void;
  /**
   * Many nodes: the lease token this node writes the chat with, or undefined
   * when it does not own the chat's shard (the batch is refused with
   * NotOwnerError, and routed again by the caller). Absent on one node.
   */
  fenceTokenOf?(chatId: string): number | undefined;
  /** Many nodes: the store refused a write with our token (a newer owner wrote). */
  onFenced?(chatId: string): void;
  /**
   * Checks a batch's sends against the chat before the append (device
   * coverage, core/device-coverage.ts): an error refuses that send and
   * nothing of it is stored. Runs in the actor, so sends keep their order.
   */
  checkSends?(chat: ChatState, drafts: readonly MessageDraft[]): Promise<Array<RemessengerError | undefined>>;
}

export class ChatActor {
  readonly chatId: string;
  private readonly deps: ChatActorDeps;
  private mailbox: PendingSend[] = [];
  /** The running drain, if any: the mailbox is being worked off. */
  private running: Promise<void> | undefined;
  private chat: ChatState | undefined;
  private memberSet: { of: readonly string[]; set: ReadonlySet<string> } | undefined;
  private lastUsedMs: number;

  constructor(chatId: string, deps: ChatActorDeps) {
    this.chatId = chatId;
    this.deps = deps;
    this.lastUsedMs = deps.clock.nowMs();
  }

  /** The chat as this actor knows it (loaded on first use, head kept current). */
  async state(): Promise<ChatState> {
    this.lastUsedMs = this.deps.clock.nowMs();
    if (this.chat !== undefined) return this.chat;
    const loaded = await this.deps.store.getChat(this.chatId);
    if (loaded === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `no chat ${this.chatId}`);
    // Another call may have loaded it while this one waited; keep the newer head.
    const current = this.chat as ChatState | undefined;
    if (current !== undefined && current.headSeq >= loaded.headSeq) return current;
    this.chat = loaded;
    return loaded;
  }

  /**
   * Queues a send. Must be called synchronously in arrival order: two sends from
   * one connection keep their order because nothing awaits before the mailbox.
   */
  send(draft: MessageDraft): Promise<SendOutcome> {
    this.lastUsedMs = this.deps.clock.nowMs();
    if (this.mailbox.length >= MAX_MAILBOX_DEPTH) {
      return Promise.reject(
        new RemessengerError(ErrorCode.ERROR_CODE_RATE_LIMITED, "chat is busy, retry shortly", { retryAfterMs: 200 }),
      );
    }
    const { promise, resolve, reject } = Promise.withResolvers<SendOutcome>();
    this.mailbox.push({ draft, resolve, reject });
    this.running ??= this.drain();
    return promise;
  }

  /** True when nothing is queued or running, so the registry may drop the actor. */
  isIdleSince(nowMs: number, idleMs: number): boolean {
    return this.running === undefined && nowMs - this.lastUsedMs >= idleMs;
  }

  /** Resolves when the mailbox is empty and no batch is in the store. */
  async whenIdle(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }

  get mailboxDepth(): number {
    return this.mailbox.length;
  }

  private async drain(): Promise<void> {
    // Yield once so every send that arrives in this turn joins the first batch.
    await Promise.resolve();
    try {
      while (this.mailbox.length > 0) {
        const batch = this.mailbox.splice(0, MAX_APPEND_BATCH);
        await this.process(batch);
      }
    } finally {
      this.running = undefined;
    }
  }

  private async process(batch: PendingSend[]): Promise<void> {
    let segment: PendingSend[] = [];
    for (const pending of batch) {
      if (pending.draft.groupOperation === undefined) {
        segment.push(pending);
        continue;
      }
      await this.appendSegment(segment);
      segment = [];
      await this.applyOperation(pending);
    }
    await this.appendSegment(segment);
  }

  /** The chat, or undefined after rejecting `pending` with why it could not be loaded. */
  private async loadFor(pending: readonly PendingSend[]): Promise<ChatState | undefined> {
    try {
      return await this.state();
    } catch (error) {
      for (const p of pending) p.reject(error);
      return undefined;
    }
  }

  /** This node's lease token for the chat ({} on one node), or undefined after refusing `pending`. */
  private fenceFor(pending: readonly PendingSend[]): { fenceToken?: number } | undefined {
    const fenceToken = this.deps.fenceTokenOf?.(this.chatId);
    if (this.deps.fenceTokenOf === undefined) return {};
    if (fenceToken === undefined) {
      const notOwner = new NotOwnerError(shardOf(this.chatId), "is not owned by this node");
      for (const p of pending) p.reject(notOwner);
      return undefined;
    }
    return { fenceToken };
  }

  /** A store failure: the senders learn why; the cached chat is dropped (the store may have moved). */
  private failInStore(pending: readonly PendingSend[], error: unknown): void {
    this.chat = undefined;
    if (error instanceof FencedError) {
      // Nothing was written: a newer owner has the chat. Route these sends again.
      this.deps.onFenced?.(this.chatId);
      const notOwner = new NotOwnerError(shardOf(this.chatId), "moved to another node (fenced)");
      for (const p of pending) p.reject(notOwner);
      return;
    }
    if (error instanceof RemessengerError && error.code === ErrorCode.ERROR_CODE_GROUP_CHANGED) {
      for (const p of pending) p.reject(error);
      return;
    }
    this.deps.onStoreError(this.chatId, error);
    // The append may or may not have happened; a retry with the same id is safe either way.
    const unavailable = new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "message store unavailable, retry", {
      cause: error,
      retryAfterMs: 500,
    });
    for (const p of pending) p.reject(unavailable);
  }

  private publish(chat: ChatState, message: Message, senderCaughtUp: boolean, userIds = chat.memberUserIds): void {
    const event = { kind: "message", message, senderCaughtUp } as const;
    if (chat.kind === ChatKind.CHAT_KIND_GROUP) this.deps.bus.publishToGroup(this.chatId, userIds, event);
    else this.deps.bus.publish(userIds, event);
  }

  /** The chat's members as a set, made again only when the member list changed (a group may have 10,000). */
  private membersOf(chat: ChatState): ReadonlySet<string> {
    if (this.memberSet?.of !== chat.memberUserIds) {
      this.memberSet = { of: chat.memberUserIds, set: new Set(chat.memberUserIds) };
    }
    return this.memberSet.set;
  }

  /** Appends a run of plain messages in one store call. */
  private async appendSegment(batch: PendingSend[]): Promise<void> {
    if (batch.length === 0) return;
    const chat = await this.loadFor(batch);
    if (chat === undefined) return;
    const members = this.membersOf(chat);
    let accepted: PendingSend[] = [];
    for (const pending of batch) {
      if (members.has(pending.draft.senderUserId)) accepted.push(pending);
      else pending.reject(notAMember(this.chatId));
    }
    if (this.deps.checkSends !== undefined && accepted.length > 0) {
      const refusals = await this.deps.checkSends(
        chat,
        accepted.map((p) => p.draft),
      );
      accepted = accepted.filter((pending, index) => {
        const refusal = refusals[index];
        if (refusal !== undefined) pending.reject(refusal);
        return refusal === undefined;
      });
    }
    if (accepted.length === 0) return;

    const fence = this.fenceFor(accepted);
    if (fence === undefined) return;
    let outcomes;
    try {
      outcomes = await this.deps.store.appendMessages(
        this.chatId,
        accepted.map((p) => p.draft),
        fence,
      );
    } catch (error) {
      this.failInStore(accepted, error);
      return;
    }

    const published: Array<{ message: Message; senderCaughtUp: boolean }> = [];
    const firstSeqOfBatch = chat.headSeq;
    accepted.forEach((pending, index) => {
      const outcome = outcomes[index];
      const { draft } = pending;
      if (outcome === undefined) {
        pending.reject(new RemessengerError(ErrorCode.ERROR_CODE_INTERNAL, "store returned too few outcomes"));
        return;
      }
      if (outcome.kind === "duplicate") {
        const again = this.answerDuplicate(pending, outcome, firstSeqOfBatch);
        if (again !== undefined) published.push({ message: again, senderCaughtUp: false });
        return;
      }
      if (outcome.seq > chat.headSeq) chat.headSeq = outcome.seq;
      pending.resolve({ seq: outcome.seq, duplicate: false, serverTimeMs: draft.serverTimeMs });
      published.push({ message: toMessage(this.chatId, outcome.seq, draft), senderCaughtUp: outcome.senderCaughtUp });
    });
    for (const { message, senderCaughtUp } of published) this.publish(chat, message, senderCaughtUp);
  }

  /**
   * Answers a send whose message id the chat has already; returns the message
   * to publish again when its first answer may never have gone out.
   */
  private answerDuplicate(
    pending: PendingSend,
    outcome: Extract<AppendOutcome, { kind: "duplicate" }>,
    firstSeqOfBatch: number,
  ): Message | undefined {
    const { draft } = pending;
    if (outcome.senderDeviceId !== draft.senderDeviceId) {
      pending.reject(
        new RemessengerError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, "message id already used by another sender"),
      );
      return undefined;
    }
    pending.resolve({ seq: outcome.seq, duplicate: true, serverTimeMs: draft.serverTimeMs });
    // A repeat after an answer that never arrived (a store timeout, a node
    // or Redis failover) may be the first time anyone hears of the
    // message: publish it again (unless this batch just did); pumps skip
    // seqs they already pushed.
    return outcome.seq <= firstSeqOfBatch ? toMessage(this.chatId, outcome.seq, draft) : undefined;
  }

  /** Checks a group operation against the chain, then appends and applies it in one store step. */
  private async applyOperation(pending: PendingSend): Promise<void> {
    let chat = await this.loadFor([pending]);
    if (chat === undefined) return;
    if (!this.membersOf(chat).has(pending.draft.senderUserId)) {
      pending.reject(notAMember(this.chatId));
      return;
    }
    let planned: PlannedChange;
    try {
      planned = await planGroupChange(this.deps.store, chat, pending.draft);
    } catch (error) {
      if (!(error instanceof RemessengerError && error.code === ErrorCode.ERROR_CODE_GROUP_CHANGED)) {
        pending.reject(error);
        return;
      }
      // Our copy of the chain may be behind the store (a lost answer), or this is a repeat of the last operation.
      this.chat = undefined;
      chat = await this.loadFor([pending]);
      if (chat === undefined) return;
      if (this.isLastOperation(chat, pending.draft)) {
        pending.resolve({ seq: chat.lastOperationSeq ?? 0, duplicate: true, serverTimeMs: pending.draft.serverTimeMs });
        this.publish(chat, toMessage(this.chatId, chat.lastOperationSeq ?? 0, pending.draft), false);
        return;
      }
      try {
        planned = await planGroupChange(this.deps.store, chat, pending.draft);
      } catch (again) {
        pending.reject(again);
        return;
      }
    }
    const fence = this.fenceFor([pending]);
    if (fence === undefined) return;
    let outcome: AppendOutcome;
    try {
      outcome = await this.deps.store.applyGroupOperation(this.chatId, pending.draft, planned.change, fence);
    } catch (error) {
      this.failInStore([pending], error);
      return;
    }
    if (outcome.kind === "duplicate") {
      this.chat = undefined; // the chain may have moved with it
      const again = this.answerDuplicate(pending, outcome, chat.headSeq);
      if (again !== undefined) this.publish(chat, again, false);
      return;
    }
    const before = chat.memberUserIds;
    const { change } = planned;
    Object.assign(chat, {
      title: change.record.title,
      memberUserIds: change.record.memberUserIds,
      adminUserIds: change.record.adminUserIds,
      epoch: change.record.epoch,
      lastOperationHash: change.operationHash,
      lastOperationSeq: outcome.seq,
      headSeq: Math.max(chat.headSeq, outcome.seq),
    });
    pending.resolve({ seq: outcome.seq, duplicate: false, serverTimeMs: pending.draft.serverTimeMs });
    const message = toMessage(this.chatId, outcome.seq, pending.draft);
    // Everyone before and after: a removed member's devices see their removal, then nothing.
    this.publish(chat, message, outcome.senderCaughtUp, [...new Set([...before, ...chat.memberUserIds])]);
    const { bus } = this.deps;
    // New members (all of them at the CREATE) are not watching the group's channel yet: their own channels tell their nodes.
    const newcomers =
      planned.operation.kind === GroupOperationKind.GROUP_OPERATION_KIND_CREATE
        ? chat.memberUserIds
        : change.addedUserIds;
    if (newcomers.length > 0) bus.publish(newcomers, { kind: "message", message, senderCaughtUp: false });
    if (change.removedUserIds.length > 0) bus.publish(change.removedUserIds, { kind: "left", chatId: this.chatId });
  }

  /** Whether `draft` carries the operation the chat's chain ends with (a repeat). */
  private isLastOperation(chat: ChatState, draft: MessageDraft): boolean {
    const signed = draft.groupOperation;
    if (signed === undefined || (chat.lastOperationSeq ?? 0) === 0) return false;
    try {
      const operation = decodeOperation(signed);
      return (
        operation.actorDeviceId === draft.senderDeviceId &&
        equalBytes(operationHash(signed.operation), chat.lastOperationHash ?? new Uint8Array(0))
      );
    } catch {
      return false;
    }
  }
}

/**
 * A sender outside the chat: NOT_FOUND, the same answer as for a chat that
 * does not exist (messenger.ts hides which). PERMISSION_DENIED is kept for
 * members refused something (a non-admin's membership change), so they see why.
 */
function notAMember(chatId: string): RemessengerError {
  return new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `not a member of ${chatId}`);
}

function toMessage(chatId: string, seq: number, draft: MessageDraft): Message {
  return Message.fromPartial({
    chatId,
    seq,
    messageId: draft.messageId,
    senderUserId: draft.senderUserId,
    senderDeviceId: draft.senderDeviceId,
    serverTimeMs: draft.serverTimeMs,
    payload: draft.payload,
    devicePayloads: draft.devicePayloads,
    ...(draft.groupOperation === undefined ? {} : { groupOperation: draft.groupOperation }),
  });
}

/**
 * The actors of this node, made on demand and dropped when idle, so memory
 * follows the chats in use, not all chats.
 */
export class ChatActorRegistry {
  private readonly actors = new Map<string, ChatActor>();
  private readonly deps: ChatActorDeps;

  constructor(deps: ChatActorDeps) {
    this.deps = deps;
  }

  get(chatId: string): ChatActor {
    let actor = this.actors.get(chatId);
    if (actor === undefined) {
      actor = new ChatActor(chatId, this.deps);
      this.actors.set(chatId, actor);
    }
    return actor;
  }

  /** Drops actors idle for `idleMs`; returns how many. */
  evictIdle(idleMs: number): number {
    const now = this.deps.clock.nowMs();
    let evicted = 0;
    for (const [chatId, actor] of this.actors) {
      if (actor.isIdleSince(now, idleMs)) {
        this.actors.delete(chatId);
        evicted += 1;
      }
    }
    return evicted;
  }

  get size(): number {
    return this.actors.size;
  }

  /** Sends queued in all mailboxes, for metrics and graceful shutdown. */
  get queuedSends(): number {
    let total = 0;
    for (const actor of this.actors.values()) total += actor.mailboxDepth;
    return total;
  }

  /** Resolves once every mailbox (of the chats `matches` picks) is empty and no batch is in the store. */
  async drained(matches: (chatId: string) => boolean = () => true): Promise<void> {
    await Promise.all([...this.actors.values()].filter((a) => matches(a.chatId)).map((actor) => actor.whenIdle()));
  }
}
