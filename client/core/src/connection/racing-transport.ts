/**
 * One connection attempt over the transport ladder: races the rungs the
 * ladder plans (each after its delay), keeps the first that opens and closes
 * the others, then behaves as the winner.
 *
 * Invariants:
 * - Frames of a candidate are held until it wins, then delivered in order
 *   before any later frame; a loser's frames are never delivered.
 * - Each failed candidate is reported to the ladder once; a candidate that
 *   fails because the caller gave up is not a failed rung.
 * - connect() settles: with the winner, with every candidate failed, or with
 *   the caller's abort.
 */
import { ErrorCode, RemessengerError } from "@remessenger/protocol";
import { type Clock, abortReason } from "../runtime/clock.ts";
import { errorText } from "../runtime/error-text.ts";
import {
  CLOSE_NORMAL,
  type Transport,
  type TransportCloseReason,
  type TransportConnectOptions,
  type TransportFactory,
  type TransportHandlers,
  type TransportKind,
} from "./transport.ts";

/** What a race asks of its ladder (TransportLadder): the plan, and each outcome to learn from. */
export interface RaceHost {
  /** The rung in use, else the one a connect would try first. */
  readonly kind: TransportKind;
  plan(): Array<{ factory: TransportFactory; delayMs: number }>;
  onConnected(kind: TransportKind): void;
  onConnectFailed(kind: TransportKind, reason: string): void;
  onLost(reason: TransportCloseReason): void;
}

type Phase = "new" | "connecting" | "open" | "closed";

/**
 * One connection attempt over the ladder: races the planned rungs, then
 * behaves as the winner. Frames of a candidate are held until it wins.
 */
export class RacingTransport implements Transport {
  private readonly ladder: RaceHost;
  private readonly clock: Clock;
  private readonly handlers: TransportHandlers;
  private winner: Transport | undefined;
  private phase: Phase = "new";
  private reason: TransportCloseReason | undefined;

  constructor(ladder: RaceHost, clock: Clock, handlers: TransportHandlers) {
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
      const reason = errorText(error);
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
      this.reason = { code: CLOSE_NORMAL, reason: errorText(error), isLocal: true };
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

/** An error's message for a reason shown to people. */
