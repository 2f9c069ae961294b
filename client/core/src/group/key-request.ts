/**
 * Asking a member device again for its sender key, as pure rules: who may be
 * handed a key on request, and how often a device asks.
 *
 * A device that holds no sender key of another member device for an epoch
 * (its distribution was lost: a restored or damaged store) shows the
 * messages as `no-sender-key` and asks that device for its key over the
 * pairwise session (`Content.sender_key_request`). The asked device answers
 * with its distribution of that epoch from where its chain stands — so the
 * messages that arrive afterwards open; those already refused stay refused.
 *
 * Invariants:
 * - A key is handed out on request only to a user that is a member now and
 *   was a member during the epoch, as the answering device verified the
 *   group's chain: a removed member gets nothing, an added member nothing of
 *   an epoch before it joined.
 * - A device asks a given sender device of a group at most once per
 *   interval (a burst of unreadable messages asks once), and remembers at
 *   most MAX_TRACKED_REQUESTS such askings.
 */
import { type GroupHistory, epochStart, isMemberAt, isMemberDuring } from "./epoch-window.ts";

/** Senders (group and device) whose last asking is remembered; the oldest are forgotten first. */
export const MAX_TRACKED_REQUESTS = 4096;

export type KeyRequestRefusal = "not-a-member" | "not-entitled" | "unknown-epoch";

export type KeyRequestVerdict = { isAllowed: true } | { isAllowed: false; reason: KeyRequestRefusal; detail: string };

/** Whether `requesterUserId` may be handed this device's sender key of `epoch`, judged on the group's history. */
export function judgeKeyRequest(history: GroupHistory, requesterUserId: string, epoch: number): KeyRequestVerdict {
  const refuse = (reason: KeyRequestRefusal, detail: string): KeyRequestVerdict => ({
    isAllowed: false,
    reason,
    detail,
  });
  const last = history.entries.at(-1);
  if (last === undefined || isMemberAt(history, last.seq + 1, requesterUserId) !== true) {
    return refuse("not-a-member", `${requesterUserId} is not a member of the group`);
  }
  if (epoch > history.epoch || epochStart(history, epoch) === undefined) {
    return refuse("unknown-epoch", `epoch ${epoch} is not one this device knows (current: ${history.epoch})`);
  }
  if (!isMemberDuring(history, epoch, requesterUserId)) {
    return refuse("not-entitled", `${requesterUserId} was not a member during epoch ${epoch}`);
  }
  return { isAllowed: true };
}

/**
 * Remembers when this device last asked each sender device of a group for
 * its key: `shouldAsk` says yes at most once per `intervalMs` per sender.
 */
export class KeyRequestThrottle {
  private readonly intervalMs: number;
  private readonly lastAskedAtMs = new Map<string, number>();

  constructor(intervalMs: number) {
    this.intervalMs = intervalMs;
  }

  /** True (and remembered) when this device has not asked `senderDeviceId` of `chatId` within the interval. */
  shouldAsk(chatId: string, senderDeviceId: string, nowMs: number): boolean {
    const key = `${chatId}/${senderDeviceId}`;
    const last = this.lastAskedAtMs.get(key);
    if (last !== undefined && nowMs - last < this.intervalMs) return false;
    this.lastAskedAtMs.delete(key);
    if (this.lastAskedAtMs.size >= MAX_TRACKED_REQUESTS) {
      const oldest = this.lastAskedAtMs.keys().next();
      if (oldest.done !== true) this.lastAskedAtMs.delete(oldest.value);
    }
    this.lastAskedAtMs.set(key, nowMs);
    return true;
  }
}
