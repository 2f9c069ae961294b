import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { TransportKind } from "./transport.ts";
import {
  CLIMB_AFTER_PROBES,
  RUNG_STABLE_AFTER_MS,
  type LadderState,
  climbTarget,
  climbing,
  connected,
  failed,
  initialLadder,
  lost,
  nextProbe,
  nextProbeAtMs,
  planRace,
  probeSucceeded,
} from "./transport-ladder.ts";

const LADDER: TransportKind[] = ["websocket", "https", "doh", "dns"];
const failure = (atMs: number, reason = "blocked") => ({ reason, code: undefined, atMs });
const rung = (state: LadderState, kind: TransportKind) => state.rungs.find((r) => r.kind === kind);

describe("transport ladder", () => {
  it("races every rung best first, each a little after the one above it", () => {
    expect(planRace(initialLadder(LADDER), 0)).toEqual([
      { kind: "websocket", delayMs: 0 },
      { kind: "https", delayMs: 300 },
      { kind: "doh", delayMs: 600 },
      { kind: "dns", delayMs: 900 },
    ]);
  });

  it("leaves a failed rung out of races while others work: only probes bring it back", () => {
    let state = failed(initialLadder(LADDER), "websocket", failure(1_000));
    expect(rung(state, "websocket")?.retryAtMs).toBe(2_000);
    expect(planRace(state, 1_500).map((e) => e.kind)).toEqual(["https", "doh", "dns"]);
    expect(planRace(state, 99_000).map((e) => e.kind)).toEqual(["https", "doh", "dns"]);
    state = failed(state, "websocket", failure(2_000));
    expect(rung(state, "websocket")?.retryAtMs).toBe(4_000); // the backoff doubles per failure
  });

  it("races the failed rungs whose backoff is over once every rung has failed", () => {
    let state = initialLadder(["websocket", "https"]);
    state = failed(state, "websocket", failure(0)); // free at 1,000
    state = failed(failed(state, "https", failure(0)), "https", failure(0)); // free at 2,000
    expect(planRace(state, 1_000)).toEqual([{ kind: "websocket", delayMs: 0 }]);
    expect(planRace(state, 2_000).map((e) => e.kind)).toEqual(["websocket", "https"]);
  });

  it("still tries the rung free soonest when every rung is in backoff", () => {
    let state = initialLadder(["websocket", "dns"]);
    state = failed(state, "websocket", failure(0));
    state = failed(state, "websocket", failure(0)); // free at 2,000
    state = failed(state, "dns", failure(0)); // free at 1,000
    expect(planRace(state, 10)).toEqual([{ kind: "dns", delayMs: 0 }]);
  });

  it("counts a drop soon after connecting as a failure of the rung, but not a drop after a good run", () => {
    const up = connected(initialLadder(LADDER), "websocket", 0);
    const early = lost(up, failure(1_000, "reset"), false);
    expect(rung(early, "websocket")?.failures).toBe(1);
    expect(early.active).toBeUndefined();
    const late = lost(up, failure(RUNG_STABLE_AFTER_MS, "reset"), false);
    expect(rung(late, "websocket")).toMatchObject({ failures: 0, retryAtMs: 0 });
    const switched = lost(up, failure(10, "climbing"), true);
    expect(rung(switched, "websocket")?.failures).toBe(0);
  });

  it("forgets the failures of rungs below the one that connected, so the next fall tries them again", () => {
    let state = initialLadder(LADDER);
    for (const kind of ["websocket", "https", "doh"] as const) state = failed(state, kind, failure(0));
    state = connected(state, "dns", 100);
    // The block lifts: the ladder climbs to WebSocket; what DoH and HTTPS did back then no longer counts.
    state = connected(lost(state, failure(20_000, "climbing"), true), "websocket", 20_000);
    expect(rung(state, "doh")).toMatchObject({ failures: 0, retryAtMs: 0 });
    expect(rung(state, "doh")?.lastFailure?.atMs).toBe(0);
    // WebSocket dies early again: the race has HTTPS, DoH and DNS, best first, not just DNS.
    state = lost(state, failure(21_000), false);
    expect(planRace(state, 21_000).map((e) => e.kind)).toEqual(["https", "doh", "dns"]);
  });

  it("probes only better rungs that are due, and none on the best rung", () => {
    let state = failed(initialLadder(LADDER), "websocket", failure(0));
    state = connected(state, "doh", 0);
    expect(nextProbe(state, 500)).toBe("https");
    state = failed(state, "https", failure(500));
    expect(nextProbe(state, 600)).toBeUndefined();
    expect(nextProbeAtMs(state)).toBe(1_000);
    expect(nextProbe(state, 1_000)).toBe("websocket");
    expect(nextProbe(connected(state, "websocket", 2_000), 9_999_999)).toBeUndefined();
  });

  it("climbs only after enough probes in a row succeeded", () => {
    let state = connected(failed(initialLadder(LADDER), "websocket", failure(0)), "https", 0);
    for (let i = 1; i < CLIMB_AFTER_PROBES; i++) state = probeSucceeded(state, "websocket", i * 5_000);
    expect(climbTarget(state)).toBeUndefined();
    const interrupted = failed(state, "websocket", failure(20_000));
    expect(climbTarget(probeSucceeded(interrupted, "websocket", 30_000))).toBeUndefined();
    state = probeSucceeded(state, "websocket", 20_000);
    expect(climbTarget(state)).toBe("websocket");
    // Climbing makes the next race start on it at once, though its probe timer had it wait.
    expect(planRace(climbing(state, "websocket"), 20_001)[0]).toEqual({ kind: "websocket", delayMs: 0 });
  });

  it("does not flap: a path that works 4 s out of every 8 s is climbed to at most twice in 30 minutes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 7_999 }), (phase) => {
        // WebSocket works when ((t + phase) mod 8 s) < 4 s; HTTPS always works.
        const isUp = (t: number): boolean => (t + phase) % 8_000 < 4_000;
        const { state, climbs } = simulate(["websocket", "https"], 30 * 60_000, isUp);
        expect(climbs).toBeLessThanOrEqual(2);
        expect(state.active).toBe("https");
      }),
      { numRuns: 100 },
    );
  });

  it("climbs back within 30 s once a path that flapped any number of times heals for good", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 12 }), (flaps) => {
        // WebSocket was raced to and dropped soon after, `flaps` times; HTTPS carries on meanwhile.
        let state = initialLadder(["websocket", "https"]);
        let t = 0;
        for (let i = 0; i < flaps; i++) {
          state = lost(connected(state, "websocket", t), failure(t + 2_000, "reset"), false);
          t += 20_000;
        }
        state = connected(state, "https", t);
        const { climbTimes } = simulate(["websocket", "https"], 60_000, () => true, "https", state, t);
        expect(climbTimes[0]).toBeDefined();
        expect((climbTimes[0] ?? Infinity) - t).toBeLessThanOrEqual(30_000);
      }),
      { numRuns: 50 },
    );
  });

  it("climbs back within 30 s after a long block lifts", () => {
    fc.assert(
      fc.property(fc.integer({ min: 60_000, max: 30 * 60_000 }), (blockedForMs) => {
        const isUp = (t: number): boolean => t >= blockedForMs;
        const { climbTimes } = simulate(["websocket", "https"], blockedForMs + 60_000, isUp, "https");
        expect(climbTimes[0]).toBeDefined();
        expect((climbTimes[0] ?? Infinity) - blockedForMs).toBeLessThanOrEqual(30_000);
      }),
      { numRuns: 100 },
    );
  });
});

/** Steps the ladder every 250 ms: the better rung works when `isUp(t)`, the other always. */
function simulate(
  kinds: TransportKind[],
  durationMs: number,
  isUp: (t: number) => boolean,
  startOn: TransportKind = kinds[1] ?? "https",
  from: LadderState = connected(initialLadder(kinds), startOn, 0),
  fromMs = 0,
): { state: LadderState; climbs: number; climbTimes: number[] } {
  const [best] = kinds as [TransportKind];
  let state = from;
  const climbTimes: number[] = [];
  for (let t = fromMs; t < fromMs + durationMs; t += 250) {
    if (state.active === best && !isUp(t)) state = connected(lost(state, failure(t), false), startOn, t);
    const probe = nextProbe(state, t);
    if (probe !== undefined) state = isUp(t) ? probeSucceeded(state, probe, t) : failed(state, probe, failure(t));
    if (climbTarget(state) === best) {
      state = connected(lost(state, failure(t, "climbing"), true), best, t);
      climbTimes.push(t);
    }
  }
  return { state, climbs: climbTimes.length, climbTimes };
}
