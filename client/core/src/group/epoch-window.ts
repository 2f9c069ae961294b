/**
 * Epochs and the grace window, as pure rules over a group's history: which
 * epoch a group message may use at its place in the group's sequence, and
 * who may send and read it. Every member judges a message by its seq and its
 * server time (both set by the server, the same for everyone), never by when
 * it happens to arrive, so all members agree, and one that was offline for
 * days judges exactly as one that was online.
 *
 * Rules (for a message of epoch `e` at seq `s`, sent by user `u`):
 * - The epoch in effect at `s` is the one of the last membership operation
 *   before `s`. A message of that epoch is accepted.
 * - A message of an earlier epoch is accepted during the grace window after
 *   the operation that ended its epoch (the start of `e + 1`): at most
 *   `messages` entries of the sequence later and at most `ms` of server time
 *   later. Afterwards it is refused ("epoch-expired"), visibly. Rapid
 *   rotations do not shorten the window of a message in flight: each epoch's
 *   window runs from its own end.
 * - A later epoch than the one in effect is refused ("future-epoch").
 * - `u` must be a member at `s` and during `e`; this device's user must have
 *   been a member during `e` ("not-entitled" otherwise: a message from before
 *   it joined or after it left).
 *
 * Invariants: the history is ascending by seq and bounded (MAX_HISTORY
 * entries); what was trimmed is older than any window and judged expired or
 * unknown, never accepted.
 */

/** How long after a rotation the previous epoch is still accepted: both limits apply. */
export interface GraceWindow {
  /** Server time after the rotation, in milliseconds. */
  ms: number;
  /** Entries of the group's sequence after the rotation (messages, key distributions, operations). */
  messages: number;
}

export const DEFAULT_GRACE_WINDOW: GraceWindow = { ms: 60 * 60 * 1000, messages: 1000 };

/** Operations a group's history keeps; older ones are trimmed. */
export const MAX_HISTORY = 256;

/** One applied membership operation, as the epoch rules need it. */
export interface HistoryEntry {
  seq: number;
  serverTimeMs: number;
  /** The group's epoch after the operation. */
  epoch: number;
  /** Users that became members / stopped being members by it. */
  added: string[];
  removed: string[];
}

export interface GroupHistory {
  /** Members after the last entry, sorted. */
  members: string[];
  /** The epoch after the last entry. */
  epoch: number;
  /** Ascending by seq. */
  entries: HistoryEntry[];
  /** Entries at or below this seq were trimmed (0: none; the first entry is the creation). */
  trimmedThroughSeq: number;
}

export type EpochFailure = "epoch-expired" | "future-epoch" | "not-entitled" | "sender-not-member" | "unknown-epoch";

export type EpochVerdict =
  { isAccepted: true; isGrace: boolean } | { isAccepted: false; reason: EpochFailure; detail: string };

export interface PlacedMessage {
  epoch: number;
  seq: number;
  serverTimeMs: number;
  senderUserId: string;
}

export const EMPTY_HISTORY: GroupHistory = { members: [], epoch: 0, entries: [], trimmedThroughSeq: 0 };

/** The history after one more operation (its seq above every entry's); trims the oldest beyond MAX_HISTORY. */
export function appendHistory(history: GroupHistory, entry: HistoryEntry, members: readonly string[]): GroupHistory {
  const last = history.entries.at(-1);
  if (last !== undefined && entry.seq <= last.seq) {
    throw new Error(`history entry at seq ${entry.seq} does not follow seq ${last.seq}`);
  }
  const entries = [...history.entries, entry];
  const dropped = entries.length > MAX_HISTORY ? entries.splice(0, entries.length - MAX_HISTORY) : [];
  return {
    members: [...members].sort(),
    epoch: entry.epoch,
    entries,
    trimmedThroughSeq: dropped.at(-1)?.seq ?? history.trimmedThroughSeq,
  };
}

/** The epoch in effect for a message at `seq`; undefined when the history does not reach back that far. */
export function epochAt(history: GroupHistory, seq: number): number | undefined {
  if (seq <= history.trimmedThroughSeq) return undefined;
  let epoch: number | undefined;
  for (const entry of history.entries) {
    if (entry.seq >= seq) break;
    epoch = entry.epoch;
  }
  return epoch;
}

/** The members for a message at `seq` (after every operation before it); undefined when trimmed away. */
export function membersAt(history: GroupHistory, seq: number): Set<string> | undefined {
  if (seq <= history.trimmedThroughSeq) return undefined;
  const members = new Set(history.members);
  for (let i = history.entries.length - 1; i >= 0; i -= 1) {
    const entry = history.entries[i];
    if (entry === undefined || entry.seq < seq) break;
    for (const id of entry.added) members.delete(id);
    for (const id of entry.removed) members.add(id);
  }
  return members;
}

/**
 * Whether `userId` is a member for a message at `seq` (undefined when trimmed
 * away). Walks back from the current members over the few operations after
 * `seq`, without copying a large member list.
 */
export function isMemberAt(history: GroupHistory, seq: number, userId: string): boolean | undefined {
  if (seq <= history.trimmedThroughSeq) return undefined;
  let isMember = includesSorted(history.members, userId);
  for (let i = history.entries.length - 1; i >= 0; i -= 1) {
    const entry = history.entries[i];
    if (entry === undefined || entry.seq < seq) break;
    if (entry.added.includes(userId)) isMember = false;
    if (entry.removed.includes(userId)) isMember = true;
  }
  return isMember;
}

function includesSorted(sorted: readonly string[], value: string): boolean {
  let low = 0;
  let high = sorted.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const at = sorted[middle] ?? "";
    if (at === value) return true;
    if (at < value) low = middle + 1;
    else high = middle - 1;
  }
  return false;
}

/** The operation that started `epoch`, if kept. */
export function epochStart(history: GroupHistory, epoch: number): HistoryEntry | undefined {
  return history.entries.find((e) => e.epoch === epoch);
}

/** Whether `userId` was a member during `epoch` (membership is constant within an epoch). */
export function isMemberDuring(history: GroupHistory, epoch: number, userId: string): boolean {
  const start = epochStart(history, epoch);
  if (start === undefined) return false;
  return isMemberAt(history, start.seq + 1, userId) ?? false;
}

/** Whether a message of an ended epoch at `seq`/`serverTimeMs` is still within the window after `end`. */
export function isWithinWindow(end: HistoryEntry, seq: number, serverTimeMs: number, window: GraceWindow): boolean {
  return seq - end.seq <= window.messages && serverTimeMs - end.serverTimeMs <= window.ms;
}

/** The verdict on a group message at its place in the sequence, for this device's user `ownUserId`. */
export function judgeGroupMessage(
  history: GroupHistory,
  message: PlacedMessage,
  ownUserId: string,
  window: GraceWindow,
): EpochVerdict {
  const refuse = (reason: EpochFailure, detail: string): EpochVerdict => ({ isAccepted: false, reason, detail });
  const current = epochAt(history, message.seq);
  if (current === undefined) {
    return refuse("unknown-epoch", `this device does not know the group's epochs at seq ${message.seq}`);
  }
  if (message.epoch > current) {
    return refuse("future-epoch", `sealed in epoch ${message.epoch}, but epoch ${current} is in effect here`);
  }
  if (isMemberAt(history, message.seq, message.senderUserId) !== true) {
    return refuse("sender-not-member", `${message.senderUserId} is not a member of the group at seq ${message.seq}`);
  }
  let isGrace = false;
  if (message.epoch < current) {
    const end = epochStart(history, message.epoch + 1);
    if (end === undefined || !isWithinWindow(end, message.seq, message.serverTimeMs, window)) {
      const after = end === undefined ? "" : ` (it ended at seq ${end.seq})`;
      return refuse(
        "epoch-expired",
        `sealed in epoch ${message.epoch}${after}, after its grace window of ${window.messages} messages / ${window.ms} ms; epoch ${current} is in effect`,
      );
    }
    if (!isMemberDuring(history, message.epoch, message.senderUserId)) {
      return refuse("sender-not-member", `${message.senderUserId} was not a member during epoch ${message.epoch}`);
    }
    isGrace = true;
  }
  if (!isMemberDuring(history, message.epoch, ownUserId)) {
    return refuse("not-entitled", `sealed in epoch ${message.epoch}, when this user was not a member`);
  }
  return { isAccepted: true, isGrace };
}
