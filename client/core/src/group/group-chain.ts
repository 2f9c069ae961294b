/**
 * A group's membership chain as this device verified it: every operation
 * checked against the acting device's identity key and the shared rules of
 * wire/group-operation.ts, applied in the group's order, with the history the
 * epoch rules need (epoch-window.ts). Catches up from the server when it
 * misses operations, and deletes the sender keys of epochs whose grace
 * window is over.
 *
 * Invariants:
 * - An operation applied already must be the very one applied (the hash at
 *   its seq): a server showing two is caught (equivocation).
 * - A refused operation changes nothing; the chain stays at the last good one.
 * - The chain is compared with the server's head once per connection.
 */
import {
  type Chat,
  type GroupOperation,
  GroupOperationError,
  type GroupOperationFailure,
  type GroupState,
  type Message,
  checkReceivedOperations,
  decodeOperation,
  describeKind,
  equalBytes,
  operationHash,
  operationProof,
  startsEpoch,
} from "@remessenger/protocol";
import type { Ed25519Provider } from "../crypto/device-signer.ts";
import { NeedsServerError } from "../e2e/pairwise-errors.ts";
import type { ClientStore, E2eWrite } from "../store/client-store.ts";
import { EMPTY_HISTORY, type GraceWindow, appendHistory, epochStart, isWithinWindow } from "./epoch-window.ts";
import { type GroupRecord, type GroupRecords, type Versioned, groupKey, keysPrefix } from "./group-records.ts";

/** Operations fetched per catch-up request, and most pages fetched at once. */
const OPERATIONS_PAGE = 500;
const MAX_CATCH_UP_PAGES = 100;

/** What the chain asks the server. */
export interface ChainServer {
  getChat(chatId: string): Promise<Chat>;
  /** Operations (messages with group_operation) after `afterSeq`, ascending; at most `limit`. */
  getGroupOperations(chatId: string, afterSeq: number, limit: number): Promise<Message[]>;
}

/** A membership operation that became part of the group's chain, as `listen` shows it. */
export interface GroupChange {
  chatId: string;
  seq: number;
  /** "created", "added", "removed", "left", "promoted", "demoted", "renamed", "rotated". */
  change: string;
  actorUserId: string;
  userIds: string[];
  /** The group's title after the operation. */
  title: string;
  epoch: number;
  /** The operation started a new epoch (new sender keys): a rotation. */
  isRotation: boolean;
  members: string[];
  admins: string[];
}

export type OperationFailure = GroupOperationFailure | "equivocation";

export type OperationOutcome =
  | { kind: "applied"; change: GroupChange; writes: E2eWrite[] }
  | { kind: "rejected"; reason: OperationFailure; detail: string };

export interface GroupChainOptions {
  store: ClientStore;
  records: GroupRecords;
  /** Identity keys of acting devices (the pairwise layer's device directory). */
  pairwise: { identityKeyOf(userId: string, deviceId: string): Promise<Uint8Array | undefined> };
  ed25519: Ed25519Provider;
  window: GraceWindow;
}

export class GroupChain {
  private readonly options: GroupChainOptions;
  private readonly records: GroupRecords;
  private server: ChainServer | undefined;
  /** Groups whose chain was compared with the server's on the current connection. */
  private readonly fresh = new Set<string>();

  constructor(options: GroupChainOptions) {
    this.options = options;
    this.records = options.records;
  }

  /** Where to fetch operations; unset when offline. A new connection compares every chain again. */
  setServer(server: ChainServer | undefined): void {
    this.server = server;
    this.fresh.clear();
  }

  /** Whether the server can be asked (a live connection was given). */
  get isOnline(): boolean {
    return this.server !== undefined;
  }

  /**
   * A membership operation at its place in the group's sequence: verified and
   * applied (catching up from the server first when this device misses
   * earlier ones), or rejected with the reason. The caller stores the message
   * with `writes`.
   */
  async receiveOperation(message: Message): Promise<OperationOutcome> {
    const signed = message.groupOperation;
    if (signed === undefined) throw new Error("not a group operation");
    let operation: GroupOperation;
    try {
      operation = decodeOperation(signed);
    } catch (error) {
      return rejected(error);
    }
    let stored = await this.records.readGroup(message.chatId);
    if (stored !== undefined && message.seq <= stored.record.lastOperationSeq) {
      // Applied already, fetched ahead of the stream: it must be the very operation applied.
      const known = stored.record.recent.find((r) => r.seq === message.seq);
      if (known !== undefined && !equalBytes(known.hash, operationHash(signed.operation))) {
        return {
          kind: "rejected",
          reason: "equivocation",
          detail: `the server showed another operation at seq ${message.seq} before`,
        };
      }
      return { kind: "applied", change: this.changeOf(message, operation, stored.record.state), writes: [] };
    }
    if (stored === undefined || !equalBytes(operation.previousHash, stored.record.state.lastOperationHash)) {
      stored = await this.catchUp(message.chatId, message.seq - 1);
    }
    try {
      const record = await this.applyVerified(stored?.record, message, operation);
      return {
        kind: "applied",
        change: this.changeOf(message, operation, record.state),
        writes: [this.records.write(groupKey(message.chatId), stored?.version ?? 0, record)],
      };
    } catch (error) {
      return rejected(error);
    }
  }

  /**
   * Compares this device's chain with the server's head once per connection
   * (`isForced`: now) and applies what it missed (one-shot senders hear no
   * pushes). Throws NeedsServerError when offline.
   */
  async refresh(chatId: string, isForced = false): Promise<void> {
    if (this.fresh.has(chatId) && !isForced) return;
    const chat = await this.requireServer(`check group ${chatId}`).getChat(chatId);
    const head = chat.group?.lastOperationSeq ?? 0;
    const stored = await this.records.readGroup(chatId);
    if (stored === undefined || head > stored.record.lastOperationSeq) await this.catchUp(chatId, head);
    this.fresh.add(chatId);
  }

  /** Applies the server's operations after this device's head through `throughSeq`; stops at the first that fails. */
  async catchUp(chatId: string, throughSeq: number): Promise<Versioned<GroupRecord> | undefined> {
    const server = this.requireServer(`fetch the operations of group ${chatId}`);
    let stored = await this.records.readGroup(chatId);
    let record = stored?.record;
    for (let page = 0; page < MAX_CATCH_UP_PAGES; page += 1) {
      const after = record?.lastOperationSeq ?? 0;
      if (after >= throughSeq) break;
      const operations = await server.getGroupOperations(chatId, after, OPERATIONS_PAGE);
      const usable = operations.filter((m) => m.seq > after && m.seq <= throughSeq);
      if (usable.length === 0) break;
      let isStuck = false;
      for (const message of usable) {
        const signed = message.groupOperation;
        if (signed === undefined) continue;
        try {
          record = await this.applyVerified(record, message, decodeOperation(signed));
        } catch (error) {
          if (!(error instanceof GroupOperationError)) throw error;
          // The stream shows this operation's verdict when it gets there; the chain stays at the last good one.
          isStuck = true;
          break;
        }
      }
      if (isStuck || operations.length < OPERATIONS_PAGE) break;
    }
    if (record !== undefined && record !== stored?.record) {
      await this.options.store.writeE2e([this.records.write(groupKey(chatId), stored?.version ?? 0, record)]);
      stored = await this.records.readGroup(chatId);
    }
    return stored;
  }

  /** The record after one operation (checked by the shared client rules), or a GroupOperationError. */
  private async applyVerified(
    record: GroupRecord | undefined,
    message: Message,
    operation: GroupOperation,
  ): Promise<GroupRecord> {
    const signed = message.groupOperation;
    if (signed === undefined) throw new GroupOperationError("undecodable", "not a group operation");
    const { pairwise, ed25519 } = this.options;
    const checked = await checkReceivedOperations(
      message.chatId,
      record?.state,
      [{ seq: message.seq, signed, senderUserId: message.senderUserId, senderDeviceId: message.senderDeviceId }],
      async (op, proof) => {
        const identityKey = await pairwise.identityKeyOf(op.actorUserId, op.actorDeviceId);
        return (
          identityKey !== undefined && ed25519.verify(identityKey, operationProof(proof.operation), proof.signature)
        );
      },
    );
    const verdict = checked.verdicts[0];
    if (verdict === undefined) throw new GroupOperationError("undecodable", "the operation was not checked");
    if (!verdict.isAccepted) throw new GroupOperationError(verdict.reason, verdict.message);
    const next = verdict.state;
    if (next.epoch !== operation.epoch) throw new GroupOperationError("wrong-epoch", "the operation's epoch moved");
    const before = new Set(record?.state.members ?? []);
    const after = new Set(next.members);
    const history = appendHistory(
      record?.history ?? EMPTY_HISTORY,
      {
        seq: message.seq,
        serverTimeMs: message.serverTimeMs,
        epoch: next.epoch,
        added: next.members.filter((m) => !before.has(m)),
        removed: [...before].filter((m) => !after.has(m)),
      },
      next.members,
    );
    const recent = [...(record?.recent ?? []), { seq: message.seq, hash: next.lastOperationHash }];
    return {
      state: next,
      history,
      lastOperationSeq: message.seq,
      recent: recent.slice(-history.entries.length),
      prunedThroughEpoch: record?.prunedThroughEpoch ?? 0,
    };
  }

  private changeOf(message: Message, operation: GroupOperation, state: GroupState): GroupChange {
    return {
      chatId: message.chatId,
      seq: message.seq,
      change: describeKind(operation.kind),
      actorUserId: operation.actorUserId,
      userIds: [...operation.userIds],
      title: state.title,
      epoch: operation.epoch,
      isRotation: startsEpoch(operation.kind),
      members: [...state.members],
      admins: [...state.admins],
    };
  }

  /**
   * Deletes the sender keys of epochs whose grace window is over at `seq` and
   * `serverTimeMs` (nothing can open with them any more).
   */
  async pruneExpired(chatId: string, seq: number, serverTimeMs: number): Promise<void> {
    const stored = await this.records.readGroup(chatId);
    if (stored === undefined) return;
    const writes = await this.pruneWrites(chatId, stored, seq, serverTimeMs);
    if (writes.length > 0) await this.options.store.writeE2e(writes);
  }

  /** The writes that delete the keys of epochs whose window is over at `seq`; none when no epoch is due. */
  async pruneWrites(
    chatId: string,
    stored: Versioned<GroupRecord>,
    seq: number,
    serverTimeMs: number,
  ): Promise<E2eWrite[]> {
    const { history, prunedThroughEpoch } = stored.record;
    let through = prunedThroughEpoch;
    for (let epoch = prunedThroughEpoch + 1; epoch < history.epoch; epoch += 1) {
      const end = epochStart(history, epoch + 1);
      if (end !== undefined && isWithinWindow(end, seq, serverTimeMs, this.options.window)) break;
      through = epoch;
    }
    if (through === prunedThroughEpoch) return [];
    const { store } = this.options;
    const keys = (await store.listE2eKeys(keysPrefix(chatId))).filter((key) => {
      const epoch = Number(key.slice(key.lastIndexOf("/") + 1));
      return Number.isInteger(epoch) && epoch <= through;
    });
    const records = await store.readE2e(keys);
    this.records.forgetSigners(chatId, through);
    return [
      ...[...records].map(([key, r]) => ({ key, expectedVersion: r.version, value: undefined })),
      this.records.write(groupKey(chatId), stored.version, { ...stored.record, prunedThroughEpoch: through }),
    ];
  }

  private requireServer(what: string): ChainServer {
    if (this.server === undefined) throw new NeedsServerError(`the server is needed to ${what}`);
    return this.server;
  }
}

function rejected(error: unknown): OperationOutcome {
  if (error instanceof GroupOperationError) {
    return { kind: "rejected", reason: error.reason, detail: error.message };
  }
  throw error;
}
