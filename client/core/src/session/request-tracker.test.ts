import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAX_REQUEST_ID, RequestTracker } from "./request-tracker.ts";

describe("RequestTracker", () => {
  it("hands out increasing ids from 1 and finds each request once", () => {
    const tracker = new RequestTracker<string>(10);
    expect(tracker.add("a")).toBe(1);
    expect(tracker.add("b")).toBe(2);
    expect(tracker.take(1)).toBe("a");
    expect(tracker.take(1)).toBeUndefined();
    expect(tracker.size).toBe(1);
  });

  it("wraps past the largest uint32 to 1, never to 0", () => {
    const tracker = new RequestTracker<string>(10, MAX_REQUEST_ID - 1);
    expect(tracker.add("a")).toBe(MAX_REQUEST_ID - 1);
    expect(tracker.add("b")).toBe(MAX_REQUEST_ID);
    expect(tracker.add("c")).toBe(1);
  });

  it("refuses requests beyond its limit until one is answered", () => {
    const tracker = new RequestTracker<number>(2);
    tracker.add(1);
    const id = tracker.add(2);
    expect(tracker.hasRoom).toBe(false);
    expect(() => tracker.add(3)).toThrow(/pending/);
    tracker.take(id);
    expect(tracker.add(3)).toBeGreaterThan(0);
  });

  it("never gives two pending requests the same id", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: MAX_REQUEST_ID }),
        fc.array(fc.oneof(fc.constant("add" as const), fc.nat({ max: 20 })), { maxLength: 200 }),
        (start, steps) => {
          const tracker = new RequestTracker<number>(16, start);
          const live = new Set<number>();
          for (const step of steps) {
            if (step === "add") {
              if (!tracker.hasRoom) continue;
              const id = tracker.add(0);
              expect(id).not.toBe(0);
              expect(live.has(id)).toBe(false);
              live.add(id);
            } else {
              const victim = [...live][step % Math.max(live.size, 1)];
              if (victim !== undefined) {
                expect(tracker.take(victim)).toBe(0);
                live.delete(victim);
              }
            }
          }
          expect(tracker.size).toBe(live.size);
        },
      ),
    );
  });
});
