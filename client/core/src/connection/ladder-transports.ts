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
import type { Clock } from "../runtime/clock.ts";
import { errorText } from "../runtime/error-text.ts";
import { type Logger, silentLogger } from "../runtime/logger.ts";
import { TypedEmitter } from "../runtime/typed-emitter.ts";
import { type RaceHost, RacingTransport } from "./racing-transport.ts";
import { probeRung } from "./rung-probe.ts";
import type {
  Transport,
  TransportCloseReason,
  TransportFactory,
  TransportHandlers,
  TransportKind,
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

export class TransportLadder implements SwitchingTransports, RaceHost {
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

  // ── RaceHost: called by RacingTransport ───────────────────────────────

  plan(): Array<{ factory: TransportFactory; delayMs: number }> {
    return planRace(this.state, this.options.clock.nowMs(), this.timing).flatMap((entry) => {
      const factory = this.factories.get(entry.kind);
      return factory === undefined ? [] : [{ factory, delayMs: entry.delayMs }];
    });
  }

  onConnected(kind: TransportKind): void {
    this.pendingSwitch = undefined;
    this.setState(connected(this.state, kind, this.options.clock.nowMs()));
    this.scheduleProbe();
  }

  onConnectFailed(kind: TransportKind, reason: string): void {
    this.setState(failed(this.state, kind, this.failure(reason), this.timing));
  }

  onLost(reason: TransportCloseReason): void {
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
      this.setState(failed(this.state, kind, this.failure(errorText(error)), this.timing));
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
