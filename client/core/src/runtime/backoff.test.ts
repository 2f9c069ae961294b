import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_BACKOFF, backoffDelay } from "./backoff.ts";

describe("backoffDelay", () => {
  it("doubles the ceiling per attempt and keeps at least half of it", () => {
    expect(backoffDelay(1, () => 0)).toBe(250);
    expect(backoffDelay(1, () => 0.999_999)).toBe(500);
    expect(backoffDelay(2, () => 0)).toBe(500);
    expect(backoffDelay(3, () => 0)).toBe(1000);
  });

  it("never exceeds the cap, even after very many attempts", () => {
    expect(backoffDelay(10_000, () => 0.999_999)).toBe(DEFAULT_BACKOFF.maxMs);
  });

  it("stays within [ceiling/2, ceiling] for any attempt and random value", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, r) => {
          const delay = backoffDelay(attempt, () => r);
          const ceiling = Math.min(
            DEFAULT_BACKOFF.maxMs,
            DEFAULT_BACKOFF.initialMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30),
          );
          expect(delay).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
          expect(delay).toBeLessThanOrEqual(ceiling);
        },
      ),
    );
  });
});
