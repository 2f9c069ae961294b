import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Inbox } from "./inbox.ts";

describe("Inbox", () => {
  it("stores new messages, skips those at or below the highest stored, and acks both", () => {
    const inbox = new Inbox(new Map([["c1", 3]]));
    expect(inbox.classify("c1", 3)).toBe("duplicate");
    inbox.skipped("c1", 3);
    expect(inbox.classify("c1", 4)).toBe("new");
    inbox.stored("c1", 4);
    expect(inbox.classify("c1", 4)).toBe("duplicate");
    expect(inbox.unacked).toBe(2);
    expect(inbox.takeAcks(100)).toEqual([{ chatId: "c1", throughSeq: 4 }]);
    expect(inbox.takeAcks(100)).toEqual([]);
  });

  it("acks again on a new connection what the old one may have lost", () => {
    const inbox = new Inbox();
    inbox.stored("c1", 1);
    inbox.takeAcks(100);
    inbox.startConnection();
    expect(inbox.classify("c1", 1)).toBe("duplicate");
    inbox.skipped("c1", 1);
    expect(inbox.takeAcks(100)).toEqual([{ chatId: "c1", throughSeq: 1 }]);
  });

  it("acks nothing that was not stored or skipped", () => {
    const inbox = new Inbox();
    expect(inbox.classify("c1", 1)).toBe("new");
    expect(inbox.takeAcks(100)).toEqual([]);
  });

  it("splits acks over calls when more chats are ackable than fit in one", () => {
    const inbox = new Inbox();
    inbox.stored("a", 1);
    inbox.stored("b", 1);
    inbox.stored("c", 1);
    expect(inbox.takeAcks(2)).toHaveLength(2);
    expect(inbox.takeAcks(2)).toEqual([{ chatId: "c", throughSeq: 1 }]);
  });

  /**
   * A model of the server's delivery (per chat, pushes from the device's
   * cursor in seq order; cumulative acks move the cursor) against the Inbox,
   * with dropped connections, lost acks and client crashes in between.
   */
  it("stores every message exactly once, in order, whatever drops and crashes happen", () => {
    const step = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant("push" as const), chat: fc.nat({ max: 2 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("ack" as const), isLost: fc.boolean() }) },
      { weight: 1, arbitrary: fc.constant({ kind: "drop" as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: "crash" as const }) },
    );
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 8 }), { minLength: 3, maxLength: 3 }),
        fc.array(step, { maxLength: 120 }),
        (sizes, steps) => {
          const chats = sizes.map((_, i) => `c${i}`);
          const cursor = new Map(chats.map((c) => [c, 0]));
          const stored = new Map<string, number[]>(chats.map((c) => [c, []]));
          let pushedThrough = new Map(cursor);
          const fromStore = (): Inbox =>
            new Inbox(new Map(chats.map((c) => [c, Math.max(0, ...(stored.get(c) ?? []))])));
          let inbox = fromStore();

          const newConnection = (): void => {
            inbox.startConnection();
            pushedThrough = new Map(cursor);
          };
          const push = (chat: string): void => {
            const seq = (pushedThrough.get(chat) ?? 0) + 1;
            if (seq > (sizes[chats.indexOf(chat)] ?? 0)) return;
            pushedThrough.set(chat, seq);
            if (inbox.classify(chat, seq) === "new") {
              stored.get(chat)?.push(seq);
              inbox.stored(chat, seq);
            } else {
              inbox.skipped(chat, seq);
            }
          };
          const ack = (isLost: boolean): void => {
            for (const { chatId, throughSeq } of inbox.takeAcks(100)) {
              expect(throughSeq).toBeLessThanOrEqual(inbox.highestStoredSeq(chatId));
              if (!isLost) cursor.set(chatId, Math.max(cursor.get(chatId) ?? 0, throughSeq));
            }
          };

          for (const s of steps) {
            switch (s.kind) {
              case "push":
                push(chats[s.chat] ?? "c0");
                break;
              case "ack":
                ack(s.isLost);
                if (s.isLost) newConnection();
                break;
              case "drop":
                newConnection();
                break;
              case "crash":
                inbox = fromStore();
                newConnection();
                break;
            }
          }
          // A final clean connection delivers the rest.
          newConnection();
          for (const chat of chats) for (let i = 0; i < 10; i++) push(chat);
          ack(false);

          chats.forEach((chat, i) => {
            const n = sizes[i] ?? 0;
            expect(stored.get(chat)).toEqual(Array.from({ length: n }, (_, k) => k + 1));
            expect(cursor.get(chat)).toBe(n);
          });
        },
      ),
      { numRuns: 300 },
    );
  });
});
