import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  EMPTY_HISTORY,
  type GraceWindow,
  type GroupHistory,
  MAX_HISTORY,
  appendHistory,
  epochAt,
  isMemberDuring,
  judgeGroupMessage,
  membersAt,
} from "./epoch-window.ts";

const USERS = ["u1", "u2", "u3", "u4", "u5", "u6"];
const WINDOW: GraceWindow = { ms: 5_000, messages: 4 };

type Op = { kind: "add" | "remove"; user: string } | { kind: "rotate" };

/** A history built the way clients build it: one entry per operation, each with its seq and time. */
function build(ops: readonly Op[], gaps: readonly number[]): { history: GroupHistory; lastSeq: number } {
  let members = new Set(["u1", "u2", "u3"]);
  let history = appendHistory(
    EMPTY_HISTORY,
    { seq: 1, serverTimeMs: 1_000, epoch: 1, added: [...members], removed: [] },
    [...members],
  );
  let seq = 1;
  let epoch = 1;
  ops.forEach((op, i) => {
    seq += 1 + (gaps[i] ?? 0);
    const added: string[] = [];
    const removed: string[] = [];
    if (op.kind === "add" && !members.has(op.user)) added.push(op.user);
    if (op.kind === "remove" && members.has(op.user) && members.size > 1) removed.push(op.user);
    members = new Set([...members, ...added].filter((m) => !removed.includes(m)));
    epoch += 1;
    history = appendHistory(history, { seq, serverTimeMs: 1_000 * seq, epoch, added, removed }, [...members]);
  });
  return { history, lastSeq: seq };
}

const OP: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constantFrom("add" as const, "remove" as const), user: fc.constantFrom(...USERS) }),
  fc.constant({ kind: "rotate" as const }),
);

describe("epoch rules", () => {
  it("accept exactly: the epoch in effect, or an ended one within its window; members only", () => {
    fc.assert(
      fc.property(
        fc.array(OP, { maxLength: 12 }),
        fc.array(fc.nat({ max: 6 }), { maxLength: 12 }),
        fc.array(
          fc.record({
            seq: fc.integer({ min: 2, max: 120 }),
            back: fc.nat({ max: 3 }),
            sender: fc.constantFrom(...USERS),
            me: fc.constantFrom(...USERS),
          }),
          { maxLength: 30 },
        ),
        (ops, gaps, messages) => {
          const { history } = build(ops, gaps);
          for (const m of messages) {
            const current = epochAt(history, m.seq);
            if (current === undefined) throw new Error("the history reaches back to the creation");
            const epoch = Math.max(1, current - m.back);
            const serverTimeMs = 1_000 * m.seq;
            const verdict = judgeGroupMessage(
              history,
              { epoch, seq: m.seq, serverTimeMs, senderUserId: m.sender },
              m.me,
              WINDOW,
            );
            const end = history.entries.find((e) => e.epoch === epoch + 1);
            const isInWindow =
              epoch === current ||
              (end !== undefined && m.seq - end.seq <= WINDOW.messages && serverTimeMs - end.serverTimeMs <= WINDOW.ms);
            const isSenderMember =
              (membersAt(history, m.seq)?.has(m.sender) ?? false) && isMemberDuring(history, epoch, m.sender);
            const isEntitled = isMemberDuring(history, epoch, m.me);
            expect(verdict.isAccepted).toBe(isInWindow && isSenderMember && isEntitled);
            if (verdict.isAccepted) expect(verdict.isGrace).toBe(epoch < current);
            // A later epoch than the one in effect never opens.
            const future = judgeGroupMessage(
              history,
              { epoch: current + 1, seq: m.seq, serverTimeMs, senderUserId: m.sender },
              m.me,
              WINDOW,
            );
            expect(future).toMatchObject({ isAccepted: false, reason: "future-epoch" });
          }
        },
      ),
    );
  });

  it("a removed member is entitled to nothing of the epochs after its removal, an added one to nothing before its join", () => {
    fc.assert(
      fc.property(fc.array(OP, { maxLength: 12 }), fc.array(fc.nat({ max: 4 }), { maxLength: 12 }), (ops, gaps) => {
        const { history, lastSeq } = build(ops, gaps);
        for (const user of USERS) {
          for (let epoch = 1; epoch <= history.epoch; epoch += 1) {
            const start = history.entries.find((e) => e.epoch === epoch);
            if (start === undefined) throw new Error(`epoch ${epoch} has no start`);
            const isMember = membersAt(history, start.seq + 1)?.has(user) ?? false;
            for (let seq = start.seq + 1; seq <= lastSeq + 1; seq += 1) {
              const verdict = judgeGroupMessage(
                history,
                { epoch, seq, serverTimeMs: 1_000 * seq, senderUserId: "u1" },
                user,
                {
                  ms: Number.MAX_SAFE_INTEGER,
                  messages: Number.MAX_SAFE_INTEGER,
                },
              );
              if (!isMember) expect(verdict.isAccepted).toBe(false);
            }
          }
        }
      }),
    );
  });

  it("judges by seq and server time: a message of the old epoch opens within the window and not after it", () => {
    let history = appendHistory(EMPTY_HISTORY, { seq: 1, serverTimeMs: 0, epoch: 1, added: ["a", "b"], removed: [] }, [
      "a",
      "b",
    ]);
    history = appendHistory(history, { seq: 10, serverTimeMs: 10_000, epoch: 2, added: [], removed: [] }, ["a", "b"]);
    const at = (seq: number, serverTimeMs: number) =>
      judgeGroupMessage(history, { epoch: 1, seq, serverTimeMs, senderUserId: "a" }, "b", WINDOW);
    expect(at(9, 9_000)).toEqual({ isAccepted: true, isGrace: false });
    expect(at(11, 10_001)).toEqual({ isAccepted: true, isGrace: true });
    expect(at(14, 15_000)).toEqual({ isAccepted: true, isGrace: true });
    expect(at(15, 15_000)).toMatchObject({ isAccepted: false, reason: "epoch-expired" });
    expect(at(12, 15_001)).toMatchObject({ isAccepted: false, reason: "epoch-expired" });
    // A user removed in the rotation may not send into the grace window either.
    history = appendHistory(history, { seq: 20, serverTimeMs: 20_000, epoch: 3, added: [], removed: ["b"] }, ["a"]);
    expect(
      judgeGroupMessage(history, { epoch: 2, seq: 21, serverTimeMs: 20_000, senderUserId: "b" }, "a", WINDOW),
    ).toMatchObject({
      isAccepted: false,
      reason: "sender-not-member",
    });
    expect(
      judgeGroupMessage(history, { epoch: 2, seq: 21, serverTimeMs: 20_000, senderUserId: "a" }, "b", WINDOW),
    ).toMatchObject({
      isAccepted: true,
    });
    expect(
      judgeGroupMessage(history, { epoch: 3, seq: 21, serverTimeMs: 20_000, senderUserId: "a" }, "b", WINDOW),
    ).toMatchObject({
      isAccepted: false,
      reason: "not-entitled",
    });
  });

  it("keeps a bounded history; what was trimmed is unknown, never accepted", () => {
    let history = appendHistory(EMPTY_HISTORY, { seq: 1, serverTimeMs: 0, epoch: 1, added: ["a"], removed: [] }, ["a"]);
    for (let i = 2; i <= MAX_HISTORY + 10; i += 1) {
      history = appendHistory(history, { seq: i * 2, serverTimeMs: i, epoch: i, added: [], removed: [] }, ["a"]);
    }
    expect(history.entries).toHaveLength(MAX_HISTORY);
    expect(epochAt(history, 3)).toBeUndefined();
    expect(
      judgeGroupMessage(history, { epoch: 1, seq: 3, serverTimeMs: 0, senderUserId: "a" }, "a", WINDOW),
    ).toMatchObject({
      isAccepted: false,
      reason: "unknown-epoch",
    });
    expect(() => appendHistory(history, { seq: 5, serverTimeMs: 0, epoch: 1, added: [], removed: [] }, ["a"])).toThrow(
      /does not follow/,
    );
  });
});
