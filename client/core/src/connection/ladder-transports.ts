/**
 * The transport ladder's shell: a TransportFactory over several pipes
 * (WebSocket → HTTPS → DoH → plain DNS) that the session uses like any one.
 * The decisions are in transport-ladder.ts; this file races connects, probes
 * better rungs in the background, and asks the session to switch when one
 * has proved itself.
 *
 * - `create()` gives a transport whose `connect` races the planned rungs and
 *   keeps the first that opens; the losers are closed, the frames of the
 *   winner flow from its first byte.
 * - While a lower rung carries the connection, better rungs are probed on the
 *   ladder's schedule (open a pipe, wait for the server's first frame, close).
 *   When one has proved itself, a "switch" event asks the session to
 *   reconnect; the next race then starts on that rung.
 * - Every change of a rung's health is emitted as a "health" event, so the
 *   connection state can show each pipe and why it is not in use.
 * - `dispose()` stops probing (the session stopped); a session started again
 *   connects through `create()` and probing resumes.
 */
import { type Clock, abortReason, pause } from "../runtime/clock.ts";
import { type Logger, silentLogger } from "../runtime/logger.ts";
import { TypedEmitter } from "../runtime/typed-emitter.ts";
import {
  type ServerBodyFrame,
  decodeServerFrame,
  encodeClientFrame,
  RemessengerError,
  ErrorCode,
} from "@remessenger/protocol";
import {
  CLOSE_GOING_AWAY,
  CLOSE_NORMAL,
  type Transport,
  type TransportCloseReason,
  type TransportConnectOptions,
  type TransportFactory,
  type TransportHandlers,
  type TransportKind,
} from "./transport.ts";
import {
  DEFAULT_LADDER_TIMING,
  type LadderState,
  type LadderTiming,
  type RungHealth,
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

/** A probe that has not finished within this long failed. */
const PROBE_TIMEOUT_MS = 8_000;
/** Pings a probe sends, this far apart, after the hello. */
const PROBE_PINGS = 2;
const PROBE_SOAK_MS = 1_000;

export interface LadderOptions {
  /** Best first. */
  rungs: readonly TransportFactory[];
  clock: Clock;
  timing?: Partial<LadderTiming>;
  /** Where a listener's error goes. */
  logger?: Logger;
}

export interface LadderEvents {
  /** A better rung proved itself: reconnect now, the next race prefers it. */
  switch: TransportKind;
  /** A rung's health changed (for the connection state). */
  health: readonly RungHealth[];
}

/** The part of the ladder the session talks to, beyond TransportFactory. */
export interface SwitchingTransports extends TransportFactory {
  readonly events: TypedEmitter<LadderEvents>;
  readonly health: readonly RungHealth[];
  /** Stops probing (the session stopped). */
  dispose(): void;
}

export function isSwitchingTransports(factory: TransportFactory): factory is SwitchingTransports {
  return "events" in factory && "dispose" in factory;
}

export class TransportLadder implements SwitchingTransports {
  readonly events: TypedEmitter<LadderEvents>;
  private state: LadderState;
  private readonly factories: ReadonlyMap<TransportKind, TransportFactory>;
  private readonly options: LadderOptions;
  private readonly timing: LadderTiming;
  private cancelProbeTimer: (() => void) | undefined;
  private probing: AbortController | undefined;
  private isDisposed = false;
  /** Set when the ladder asked for the switch, so the drop it causes is nobody's fault. */
  private pendingSwitch: TransportKind | undefined;

  constructor(options: LadderOptions) {
    if (options.rungs.length === 0) throw new Error("a transport ladder needs at least one rung");
    this.options = options;
    this.timing = { ...DEFAULT_LADDER_TIMING, ...options.timing };
    this.factories = new Map(options.rungs.map((f) => [f.kind, f]));
    this.state = initialLadder(options.rungs.map((f) => f.kind));
    const logger = options.logger ?? silentLogger;
    this.events = new TypedEmitter((error, event) => {
      logger.error({ err: error, event }, "a transport ladder listener threw");
    });
  }

  /** The rung in use, else the one a connect would try first. */
  get kind(): TransportKind {
    return this.state.active ?? planRace(this.state, this.options.clock.nowMs(), this.timing)[0]?.kind ?? "websocket";
  }

  get health(): readonly RungHealth[] {
    return this.state.rungs;
  }

  create(handlers: TransportHandlers): Transport {
    // A connect after dispose() is a session started again: probing resumes with it.
    this.isDisposed = false;
    return new RacingTransport(this, this.options.clock, handlers);
  }

  dispose(): void {
    this.isDisposed = true;
    this.cancelProbeTimer?.();
    this.probing?.abort(new Error("ladder disposed"));
  }

  // ── called by RacingTransport ─────────────────────────────────────────

  /** @internal */ plan(): Array<{ factory: TransportFactory; delayMs: number }> {
    return planRace(this.state, this.options.clock.nowMs(), this.timing).flatMap((entry) => {
      const factory = this.factories.get(entry.kind);
      return factory === undefined ? [] : [{ factory, delayMs: entry.delayMs }];
    });
  }

  /** @internal */ onConnected(kind: TransportKind): void {
    this.pendingSwitch = undefined;
    this.setState(connected(this.state, kind, this.options.clock.nowMs()));
    this.scheduleProbe();
  }

  /** @internal */ onConnectFailed(kind: TransportKind, reason: string): void {
    this.setState(failed(this.state, kind, this.failure(reason), this.timing));
  }

  /** @internal */ onLost(reason: TransportCloseReason): void {
    const isSwitch = this.pendingSwitch !== undefined;
    this.pendingSwitch = undefined;
    this.cancelProbeTimer?.();
    this.probing?.abort(new Error("connection lost"));
    this.setState(lost(this.state, this.failure(reason.reason), isSwitch, this.timing));
  }

  // ── probing ───────────────────────────────────────────────────────────

  private scheduleProbe(): void {
    this.cancelProbeTimer?.();
    this.cancelProbeTimer = undefined;
    if (this.isDisposed || this.probing !== undefined) return;
    const at = nextProbeAtMs(this.state);
    if (at === undefined) return;
    const delay = Math.max(1, at - this.options.clock.nowMs());
    this.cancelProbeTimer = this.options.clock.setTimer(() => {
      this.cancelProbeTimer = undefined;
      void this.probeOnce();
    }, delay);
  }

  private async probeOnce(): Promise<void> {
    if (this.isDisposed) return;
    const kind = nextProbe(this.state, this.options.clock.nowMs());
    const factory = kind === undefined ? undefined : this.factories.get(kind);
    if (kind === undefined || factory === undefined) {
      // Timers may fire a millisecond before the clock says the probe is due: ask again.
      this.scheduleProbe();
      return;
    }
    const probing = new AbortController();
    this.probing = probing;
    try {
      await probeRung(factory, this.options.clock, probing.signal);
      if (probing.signal.aborted || this.state.active === undefined) return;
      this.setState(probeSucceeded(this.state, kind, this.options.clock.nowMs(), this.timing));
      const target = climbTarget(this.state);
      if (target !== undefined && this.events.listenerCount("switch") > 0) {
        this.pendingSwitch = target;
        this.setState(climbing(this.state, target));
        this.events.emit("switch", target);
        return;
      }
    } catch (error) {
      if (probing.signal.aborted || this.state.active === undefined) return;
      this.setState(failed(this.state, kind, this.failure(describe(error)), this.timing));
    } finally {
      if (this.probing === probing) this.probing = undefined;
    }
    this.scheduleProbe();
  }

  private failure(reason: string): { reason: string; code: undefined; atMs: number } {
    return { reason, code: undefined, atMs: this.options.clock.nowMs() };
  }

  private setState(next: LadderState): void {
    this.state = next;
    this.events.emit("health", next.rungs);
  }
}

/**
 * Opens a pipe of this rung and checks it carries traffic for a little while:
 * the server's hello, then pings PROBE_SOAK_MS apart, each answered. A censor
 * that lets a handshake through and kills the flow after it fails the probe.
 */
async function probeRung(factory: TransportFactory, clock: Clock, signal: AbortSignal): Promise<void> {
  const frames: ServerBodyFrame[] = [];
  let wake: (() => void) | undefined;
  let closedWith: string | undefined;
  const transport = factory.create({
    onFrame: (bytes) => {
      try {
        frames.push(decodeServerFrame(bytes));
      } catch {
        closedWith = "the server sent an undecodable frame";
      }
      wake?.();
    },
    onClose: (reason) => {
      closedWith = reason.reason;
      wake?.();
    },
  });
  const timeout = new AbortController();
  const cancelTimer = clock.setTimer(() => {
    timeout.abort(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`));
  }, PROBE_TIMEOUT_MS);
  const limit = AbortSignal.any([signal, timeout.signal]);
  const until = async (test: () => boolean): Promise<void> => {
    while (!test()) {
      if (closedWith !== undefined) throw new Error(closedWith);
      if (limit.aborted) throw abortReason(limit);
      await new Promise<void>((resolve) => {
        wake = resolve;
        limit.addEventListener("abort", () => resolve(), { once: true });
      });
      wake = undefined;
    }
  };
  try {
    await transport.connect({ signal: limit, timeoutMs: PROBE_TIMEOUT_MS });
    await until(() => frames.some((f) => f.body.$case === "hello"));
    for (let requestId = 1; requestId <= PROBE_PINGS; requestId++) {
      if (requestId > 1) await pause(clock, PROBE_SOAK_MS, limit);
      transport.send(
        encodeClientFrame({ requestId, request: { $case: "ping", value: { clientTimeMs: clock.nowMs() } } }),
      );
      await until(() => frames.some((f) => f.requestId === requestId));
    }
  } finally {
    cancelTimer();
    transport.close(CLOSE_NORMAL, "probe done");
  }
}

type Phase = "new" | "connecting" | "open" | "closed";

/**
 * One connection attempt over the ladder: races the planned rungs, then
 * behaves as the winner. Frames of a candidate are held until it wins.
 */
class RacingTransport implements Transport {
  private readonly ladder: TransportLadder;
  private readonly clock: Clock;
  private readonly handlers: TransportHandlers;
  private winner: Transport | undefined;
  private phase: Phase = "new";
  private reason: TransportCloseReason | undefined;

  constructor(ladder: TransportLadder, clock: Clock, handlers: TransportHandlers) {
    this.ladder = ladder;
    this.clock = clock;
    this.handlers = handlers;
  }

  get kind(): TransportKind {
    return this.winner?.kind ?? this.ladder.kind;
  }

  get bufferedAmount(): number {
    return this.winner?.bufferedAmount ?? 0;
  }

  get closeReason(): TransportCloseReason | undefined {
    return this.reason;
  }

  async connect({ signal, timeoutMs }: TransportConnectOptions): Promise<void> {
    if (this.phase !== "new") throw new Error("a transport connects once");
    if (signal.aborted) throw abortReason(signal);
    this.phase = "connecting";
    const plan = this.ladder.plan();
    const race = new AbortController();
    const raceSignal = AbortSignal.any([signal, race.signal]);
    const failures: string[] = [];
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    let pending = plan.length;
    const timers: Array<() => void> = [];
    const candidates: Transport[] = [];

    const onCandidateFailed = (kind: TransportKind, error: unknown): void => {
      if (this.winner !== undefined || signal.aborted) return;
      const reason = describe(error);
      failures.push(`${kind}: ${reason}`);
      this.ladder.onConnectFailed(kind, reason);
      pending -= 1;
      if (pending === 0) {
        reject(
          new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, `no transport could connect (${failures.join("; ")})`),
        );
      }
    };

    const start = (factory: TransportFactory): void => {
      if (this.winner !== undefined || raceSignal.aborted) return;
      const held: Uint8Array[] = [];
      const candidate = factory.create({
        onFrame: (frame) => {
          if (this.winner === candidate) this.handlers.onFrame(frame);
          else held.push(frame);
        },
        onClose: (reason) => {
          if (this.winner === candidate) this.onWinnerClosed(reason);
        },
      });
      candidates.push(candidate);
      candidate.connect({ signal: raceSignal, timeoutMs }).then(
        () => {
          if (this.winner !== undefined || raceSignal.aborted) {
            candidate.close(CLOSE_NORMAL, "another transport won");
            return;
          }
          this.winner = candidate;
          this.phase = "open";
          race.abort(new Error("race won"));
          for (const cancel of timers) cancel();
          for (const other of candidates) if (other !== candidate) other.close(CLOSE_NORMAL, "another transport won");
          this.ladder.onConnected(candidate.kind);
          resolve();
          for (const frame of held) this.handlers.onFrame(frame);
        },
        (error: unknown) => {
          onCandidateFailed(candidate.kind, error);
        },
      );
    };

    // Candidates that fail because the caller gave up do not count as failed rungs, so the
    // caller's abort itself must end the race (else connect would wait forever).
    const onAbort = (): void => {
      reject(abortReason(signal));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    for (const { factory, delayMs } of plan) {
      if (delayMs === 0) start(factory);
      else timers.push(this.clock.setTimer(() => start(factory), delayMs));
    }
    try {
      await promise;
    } catch (error) {
      race.abort(error);
      for (const candidate of candidates) candidate.close(CLOSE_NORMAL, "the attempt was given up");
      this.phase = "closed";
      this.reason = { code: CLOSE_NORMAL, reason: describe(error), isLocal: true };
      throw signal.aborted ? abortReason(signal) : error;
    } finally {
      signal.removeEventListener("abort", onAbort);
      for (const cancel of timers) cancel();
    }
  }

  send(frame: Uint8Array): void {
    if (this.phase !== "open" || this.winner === undefined) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "the transport is not open");
    }
    this.winner.send(frame);
  }

  close(code: number, reason: string): void {
    if (this.phase !== "open") return;
    this.winner?.close(code, reason);
  }

  private onWinnerClosed(reason: TransportCloseReason): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    this.reason = reason;
    this.ladder.onLost(reason);
    this.handlers.onClose(reason);
  }
}

/** A close code the session uses when the ladder switches rungs. */
export const CLOSE_SWITCHING = CLOSE_GOING_AWAY;

function describe(value: unknown): string {
  if (value instanceof Error) return value.message;
  return typeof value === "string" ? value : "unknown error";
}
