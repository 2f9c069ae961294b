/**
 * The transport ladder's decisions, as plain data and functions: which pipes
 * to try and when, which better pipe to probe in the background, and when to
 * climb back to it. No sockets, no timers: the shell (ladder-transports.ts)
 * does the I/O and feeds the outcomes back in.
 *
 * Rungs are ordered best first (WebSocket → HTTPS → DoH → plain DNS).
 * Invariants:
 * - A rung that failed waits out its own backoff before it is tried or probed
 *   again; the backoff doubles with each consecutive failure, so a blocked
 *   path costs less and less.
 * - Connects race the rungs that have not failed, best first, each starting a
 *   little after the one above it (like Happy Eyeballs): a working good rung
 *   wins, a dead one costs no more than its head start. A rung that failed is
 *   raced again only when every rung has failed; otherwise only probes bring
 *   the ladder back to it. Failures of rungs below the one in use are
 *   forgotten when it connects: nothing probes down, so they would be stale.
 * - Failed rungs are probed again within the maximum backoff (10 s by default), so a
 *   path that heals is noticed fast.
 * - The ladder climbs to a better rung only after probes of it succeeded
 *   CLIMB_AFTER_PROBES times in a row — that many more for each time it
 *   dropped soon after being used ("flaps", up to MAX_FLAP_PENALTY of them,
 *   forgotten once it holds for RUNG_STABLE_AFTER_MS): a flapping path stops
 *   being climbed to instead of making the connection flap, yet a path that
 *   heals for good is back in use within about 30 s.
 */
import type { ConnectionFailure, TransportHealth } from "./connection-state.ts";
import type { TransportKind } from "./transport.ts";

/** Probes of a better rung that must succeed in a row before the ladder climbs to it. */
export const CLIMB_AFTER_PROBES = 2;
/** Flaps beyond this many ask for no more probes: the climb back stays within about 30 s. */
export const MAX_FLAP_PENALTY = 2;
/** A connection up this long proves its rung: its failure count resets. */
export const RUNG_STABLE_AFTER_MS = 15_000;

export interface LadderTiming {
  /** Head start of each rung over the next one in a race. */
  raceStaggerMs: number;
  /** First retry delay of a failed rung; doubles per consecutive failure. */
  failureBackoffMs: number;
  /** Ceiling of a rung's backoff. */
  maxBackoffMs: number;
  /** Interval between probes of a better rung that is not failing. */
  probeIntervalMs: number;
}

export const DEFAULT_LADDER_TIMING: LadderTiming = {
  raceStaggerMs: 300,
  failureBackoffMs: 1_000,
  maxBackoffMs: 10_000,
  probeIntervalMs: 3_000,
};

/** What the ladder knows about one pipe; shown to the user as per-transport health. */
export type RungHealth = TransportHealth;

export interface LadderState {
  readonly rungs: readonly RungHealth[];
  /** The rung carrying the connection now. */
  readonly active: TransportKind | undefined;
  /** When the active rung's connection came up. */
  readonly activeSinceMs: number | undefined;
}

/** One rung to try in a race, after `delayMs`. */
export interface RaceEntry {
  kind: TransportKind;
  delayMs: number;
}

export function initialLadder(kinds: readonly TransportKind[]): LadderState {
  if (kinds.length === 0) throw new Error("a transport ladder needs at least one rung");
  return {
    rungs: kinds.map((kind) => ({
      kind,
      failures: 0,
      lastFailure: undefined,
      lastSuccessAtMs: undefined,
      retryAtMs: 0,
      probeSuccesses: 0,
      flaps: 0,
    })),
    active: undefined,
    activeSinceMs: undefined,
  };
}

/**
 * The rungs to race now, best first, each after its head start: those that
 * have not failed (or are being climbed to); when every rung has failed, those
 * whose backoff is over; when none is, the one free soonest (the caller's own
 * backoff already paced this attempt).
 */
export function planRace(state: LadderState, nowMs: number, timing: LadderTiming = DEFAULT_LADDER_TIMING): RaceEntry[] {
  const healthy = state.rungs.filter((r) => r.failures === 0 || r.retryAtMs === 0);
  const due = state.rungs.filter((r) => r.retryAtMs <= nowMs);
  const chosen =
    healthy.length > 0
      ? healthy
      : due.length > 0
        ? due
        : [state.rungs.reduce((soonest, r) => (r.retryAtMs < soonest.retryAtMs ? r : soonest))];
  return chosen.map((rung, index) => ({ kind: rung.kind, delayMs: index * timing.raceStaggerMs }));
}

/** The race was won by `kind`: it is the active rung now. */
export function connected(state: LadderState, kind: TransportKind, nowMs: number): LadderState {
  const rank = rankOf(state, kind);
  return {
    rungs: state.rungs.map((r, index) => {
      if (r.kind === kind) return { ...r, lastSuccessAtMs: nowMs, retryAtMs: 0, probeSuccesses: 0 };
      // What failed below the rung in use is old news by the time it matters again (nothing
      // probes down): those rungs race again, staggered behind the ones above them.
      if (index > rank && r.failures > 0) return { ...r, failures: 0, retryAtMs: 0 };
      return r;
    }),
    active: kind,
    activeSinceMs: nowMs,
  };
}

/** `kind` failed to connect, or a probe of it failed. */
export function failed(
  state: LadderState,
  kind: TransportKind,
  failure: ConnectionFailure,
  timing: LadderTiming = DEFAULT_LADDER_TIMING,
): LadderState {
  return {
    ...state,
    rungs: update(state.rungs, kind, (r) => {
      const failures = r.failures + 1;
      return {
        ...r,
        failures,
        lastFailure: failure,
        retryAtMs: failure.atMs + backoff(failures, timing),
        probeSuccesses: 0,
      };
    }),
  };
}

/**
 * The active connection ended. One that lasted RUNG_STABLE_AFTER_MS proves
 * the rung (failures reset); a shorter one counts as a failure of it.
 * `isSwitch` when the ladder itself closed it to climb: no fault of the rung.
 */
export function lost(
  state: LadderState,
  failure: ConnectionFailure,
  isSwitch: boolean,
  timing: LadderTiming = DEFAULT_LADDER_TIMING,
): LadderState {
  const kind = state.active;
  if (kind === undefined) return state;
  const wasStable = state.activeSinceMs !== undefined && failure.atMs - state.activeSinceMs >= RUNG_STABLE_AFTER_MS;
  const cleared = { ...state, active: undefined, activeSinceMs: undefined };
  if (isSwitch) return cleared;
  if (wasStable) {
    // A drop after a good run: retry this rung first, at once, but remember why.
    return {
      ...cleared,
      rungs: update(state.rungs, kind, (r) => ({ ...r, failures: 0, flaps: 0, lastFailure: failure, retryAtMs: 0 })),
    };
  }
  const penalised = failed(cleared, kind, failure, timing);
  return { ...penalised, rungs: update(penalised.rungs, kind, (r) => ({ ...r, flaps: r.flaps + 1 })) };
}

/** The best rung above the active one that is due for a probe, if any. */
export function nextProbe(state: LadderState, nowMs: number): TransportKind | undefined {
  if (state.active === undefined) return undefined;
  for (const rung of state.rungs) {
    if (rung.kind === state.active) return undefined;
    if (rung.retryAtMs <= nowMs) return rung.kind;
  }
  return undefined;
}

/** When the next probe is due (for the shell's timer); undefined when on the best rung. */
export function nextProbeAtMs(state: LadderState): number | undefined {
  if (state.active === undefined) return undefined;
  let earliest: number | undefined;
  for (const rung of state.rungs) {
    if (rung.kind === state.active) break;
    earliest = earliest === undefined ? rung.retryAtMs : Math.min(earliest, rung.retryAtMs);
  }
  return earliest;
}

/** A probe of `kind` (a better rung) opened a working pipe. */
export function probeSucceeded(
  state: LadderState,
  kind: TransportKind,
  nowMs: number,
  timing: LadderTiming = DEFAULT_LADDER_TIMING,
): LadderState {
  return {
    ...state,
    rungs: update(state.rungs, kind, (r) => ({
      ...r,
      probeSuccesses: r.probeSuccesses + 1,
      lastSuccessAtMs: nowMs,
      retryAtMs: nowMs + timing.probeIntervalMs,
    })),
  };
}

/** The better rung to climb to now, if probes proved one. */
export function climbTarget(state: LadderState): TransportKind | undefined {
  if (state.active === undefined) return undefined;
  for (const rung of state.rungs) {
    if (rung.kind === state.active) return undefined;
    if (rung.probeSuccesses >= probesToClimb(rung)) return rung.kind;
  }
  return undefined;
}

/** The ladder is about to climb to `kind`: the next race must try it first, at once. */
export function climbing(state: LadderState, kind: TransportKind): LadderState {
  return { ...state, rungs: update(state.rungs, kind, (r) => ({ ...r, retryAtMs: 0 })) };
}

/** Probes in a row a rung needs before the ladder climbs to it. */
export function probesToClimb(rung: RungHealth): number {
  return CLIMB_AFTER_PROBES * (1 + Math.min(rung.flaps, MAX_FLAP_PENALTY));
}

/** Where `kind` stands in the ladder (0 = best). */
export function rankOf(state: LadderState, kind: TransportKind): number {
  return state.rungs.findIndex((r) => r.kind === kind);
}

function backoff(failures: number, timing: LadderTiming): number {
  return Math.min(timing.maxBackoffMs, timing.failureBackoffMs * 2 ** Math.min(failures - 1, 20));
}

function update(
  rungs: readonly RungHealth[],
  kind: TransportKind,
  change: (rung: RungHealth) => RungHealth,
): readonly RungHealth[] {
  return rungs.map((r) => (r.kind === kind ? change(r) : r));
}
