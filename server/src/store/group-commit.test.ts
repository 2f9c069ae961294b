import { describe, expect, it } from "vitest";
import { ErrorCode } from "@remessenger/protocol";
import { GroupCommit, type Settlement } from "./group-commit.ts";

/** A commit that records each batch and answers with the ops themselves, failing odd numbers. */
function recordingCommit(options: { maxBatchWeight?: number; maxPendingWeight?: number } = {}) {
  const batches: number[][] = [];
  let release: (() => void) | undefined;
  let isHeld = false;
  const group = new GroupCommit<number>({
    commit: async (ops) => {
      batches.push([...ops]);
      if (isHeld) await new Promise<void>((resolve) => (release = resolve));
      return ops.map((op): Settlement<unknown> =>
        op % 2 === 0 ? { ok: true, value: op } : { ok: false, error: new Error(`odd ${op}`) },
      );
    },
    weigh: (op) => (op >= 100 ? op / 100 : 1),
    maxBatchWeight: options.maxBatchWeight ?? 1_000,
    maxPendingWeight: options.maxPendingWeight ?? 10_000,
  });
  return {
    group,
    batches,
    hold: () => {
      isHeld = true;
    },
    releaseHeld: () => {
      isHeld = false;
      release?.();
    },
  };
}

describe("GroupCommit", () => {
  it("commits operations submitted in one turn together", async () => {
    const { group, batches } = recordingCommit();
    const results = await Promise.all([0, 2, 4, 6].map((op) => group.submit(op)));
    expect(results).toEqual([0, 2, 4, 6]);
    expect(batches).toEqual([[0, 2, 4, 6]]);
    expect(group.stats).toEqual({ commits: 1, ops: 4 });
  });

  it("fails only the operation that failed, not its batch neighbours", async () => {
    const { group } = recordingCommit();
    const results = await Promise.allSettled([2, 3, 4].map((op) => group.submit(op)));
    expect(results.map((result) => result.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
  });

  it("gathers what arrives while a commit runs into the next one", async () => {
    const { group, batches, hold, releaseHeld } = recordingCommit();
    hold();
    const first = group.submit(0);
    await new Promise((resolve) => setImmediate(resolve));
    const later = [2, 4, 6].map((op) => group.submit(op));
    releaseHeld();
    expect(await first).toBe(0);
    expect(await Promise.all(later)).toEqual([2, 4, 6]);
    expect(batches).toEqual([[0], [2, 4, 6]]);
  });

  it("rejects every operation of a commit that failed as a whole", async () => {
    const group = new GroupCommit<number>({
      commit: () => Promise.reject(new Error("disk gone")),
      weigh: () => 1,
      maxBatchWeight: 10,
      maxPendingWeight: 10,
    });
    const results = await Promise.allSettled([1, 2].map((op) => group.submit(op)));
    expect(results.every((result) => result.status === "rejected")).toBe(true);
  });

  it("splits a queue heavier than maxBatchWeight over several commits, in order", async () => {
    const { group, batches } = recordingCommit({ maxBatchWeight: 5 });
    await Promise.all([200, 200, 200, 400, 2].map((op) => group.submit(op)));
    expect(batches).toEqual([[200, 200], [200], [400, 2]]);
  });

  it("refuses work beyond maxPendingWeight with UNAVAILABLE instead of queueing it", async () => {
    const { group } = recordingCommit({ maxPendingWeight: 3 });
    const accepted = [0, 2, 4].map((op) => group.submit(op));
    await expect(group.submit(6)).rejects.toMatchObject({ code: ErrorCode.ERROR_CODE_UNAVAILABLE });
    expect(await Promise.all(accepted)).toEqual([0, 2, 4]);
  });

  it("commits what was queued before close and refuses what comes after", async () => {
    const { group } = recordingCommit();
    const queued = group.submit(8);
    await group.close();
    expect(await queued).toBe(8);
    await expect(group.submit(10)).rejects.toMatchObject({ code: ErrorCode.ERROR_CODE_UNAVAILABLE });
  });
});
