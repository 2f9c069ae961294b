import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EMPTY_HISTORY, type GroupHistory, appendHistory } from "./epoch-window.ts";
import { KeyRequestThrottle, MAX_TRACKED_REQUESTS, judgeKeyRequest } from "./key-request.ts";

/** Epoch 1: u1, u2, u3; epoch 2: u4 added; epoch 3: u2 removed; epoch 4: a rotation. */
function history(): GroupHistory {
  let h = appendHistory(EMPTY_HISTORY, { seq: 1, serverTimeMs: 1, epoch: 1, added: ["u1", "u2", "u3"], removed: [] }, [
    "u1",
    "u2",
    "u3",
  ]);
  h = appendHistory(h, { seq: 5, serverTimeMs: 5, epoch: 2, added: ["u4"], removed: [] }, ["u1", "u2", "u3", "u4"]);
  h = appendHistory(h, { seq: 9, serverTimeMs: 9, epoch: 3, added: [], removed: ["u2"] }, ["u1", "u3", "u4"]);
  return appendHistory(h, { seq: 12, serverTimeMs: 12, epoch: 4, added: [], removed: [] }, ["u1", "u3", "u4"]);
}

describe("sender key requests", () => {
  it("hand a key only to a current member that was a member during the epoch", () => {
    const h = history();
    expect(judgeKeyRequest(h, "u3", 1)).toEqual({ isAllowed: true });
    expect(judgeKeyRequest(h, "u3", 4)).toEqual({ isAllowed: true });
    expect(judgeKeyRequest(h, "u4", 2)).toEqual({ isAllowed: true });
    // Added in epoch 2: nothing of epoch 1.
    expect(judgeKeyRequest(h, "u4", 1)).toMatchObject({ isAllowed: false, reason: "not-entitled" });
    // Removed: nothing at all, not even of the epochs it was a member of.
    expect(judgeKeyRequest(h, "u2", 4)).toMatchObject({ isAllowed: false, reason: "not-a-member" });
    expect(judgeKeyRequest(h, "u2", 1)).toMatchObject({ isAllowed: false, reason: "not-a-member" });
    expect(judgeKeyRequest(h, "u9", 4)).toMatchObject({ isAllowed: false, reason: "not-a-member" });
    expect(judgeKeyRequest(h, "u1", 5)).toMatchObject({ isAllowed: false, reason: "unknown-epoch" });
    expect(judgeKeyRequest(EMPTY_HISTORY, "u1", 1)).toMatchObject({ isAllowed: false, reason: "not-a-member" });
  });

  it("allow exactly the requests whose user is a member now and was one during the epoch (property)", () => {
    const h = history();
    const membersOf = new Map<number, string[]>([
      [1, ["u1", "u2", "u3"]],
      [2, ["u1", "u2", "u3", "u4"]],
      [3, ["u1", "u3", "u4"]],
      [4, ["u1", "u3", "u4"]],
    ]);
    fc.assert(
      fc.property(fc.constantFrom("u1", "u2", "u3", "u4", "u5"), fc.integer({ min: 0, max: 6 }), (userId, epoch) => {
        const isEntitled = h.members.includes(userId) && (membersOf.get(epoch)?.includes(userId) ?? false);
        expect(judgeKeyRequest(h, userId, epoch).isAllowed).toBe(isEntitled);
      }),
    );
  });

  it("ask each sender device of a group once per interval, however many of its messages fail", () => {
    const throttle = new KeyRequestThrottle(60_000);
    expect(throttle.shouldAsk("c1", "d1", 0)).toBe(true);
    expect(throttle.shouldAsk("c1", "d1", 1)).toBe(false);
    expect(throttle.shouldAsk("c1", "d1", 59_999)).toBe(false);
    // Another device, or the same device in another group, is asked on its own.
    expect(throttle.shouldAsk("c1", "d2", 1)).toBe(true);
    expect(throttle.shouldAsk("c2", "d1", 1)).toBe(true);
    // After the interval: once more.
    expect(throttle.shouldAsk("c1", "d1", 60_000)).toBe(true);
    expect(throttle.shouldAsk("c1", "d1", 60_001)).toBe(false);
  });

  it("remember a bounded number of senders, forgetting the oldest first", () => {
    const throttle = new KeyRequestThrottle(60_000);
    for (let i = 0; i <= MAX_TRACKED_REQUESTS; i += 1) expect(throttle.shouldAsk("c", `d${i}`, 0)).toBe(true);
    // d0 was forgotten (asking it again is harmless); the newest are still remembered.
    expect(throttle.shouldAsk("c", "d0", 1)).toBe(true);
    expect(throttle.shouldAsk("c", `d${MAX_TRACKED_REQUESTS}`, 1)).toBe(false);
  });
});
