/**
 * The DNS tunnel pipes (kind "doh" and "dns"): frames → sealed records → a
 * reliable stream (tunnel-session.ts) → tunnel packets in query names and
 * TXT answers → DNS messages on a DnsExchange (DoH or plain DNS). This file
 * is the imperative shell: handshake, timers, crypto; every decision is in
 * TunnelSession, and the queries go out and come back through the
 * TunnelQueryPump (tunnel-query-pump.ts: resolvers, DNS encoding, stats).
 *
 * connect(): a Noise NK handshake against the pinned gateway key, its first
 * message cut into fragments that fit even a 72-character name. The session
 * then proves the name budget with its first full-length query; when long
 * names keep failing the session ends and the factory steps the budget down
 * (253 → 101 → 72) for the next connection.
 */
import {
  selectX25519Provider,
  RecordOpener,
  RecordSealer,
  obfuscationMasker,
  startClientHandshake,
  type X25519Provider,
  type ClientHandshake,
  type TunnelKeys,
  type Masker,
  type TunnelQuery,
  RemessengerError,
  randomBytes,
  MAX_FRAME_BYTES,
  ErrorCode,
  NAME_BUDGET_STEPS,
  normalizeZone,
  upstreamCapacityBytes,
  HANDSHAKE_QUERY_HEADER_BYTES,
  MAX_HANDSHAKE_FRAGMENTS,
  QUERY_HEADER_BYTES,
} from "@remessenger/protocol";
import { type Clock, abortReason, systemClock } from "../runtime/clock.ts";
import { type Logger, silentLogger } from "../runtime/logger.ts";
import type { DnsExchange } from "./dns-exchange.ts";
import {
  CLOSE_ABNORMAL,
  CLOSE_NORMAL,
  type Transport,
  type TransportCloseReason,
  type TransportConnectOptions,
  type TransportFactory,
  type TransportHandlers,
} from "./transport.ts";
import { QueryError, TunnelQueryPump, type TunnelStats, describeFailure, takeRandom } from "./tunnel-query-pump.ts";
import {
  DEFAULT_TUNNEL_SESSION_CONFIG,
  type OutgoingQuery,
  type SessionEnd,
  type TunnelEffect,
  TunnelSession,
  type TunnelSessionConfig,
} from "./tunnel-session.ts";

export type { TunnelStats } from "./tunnel-query-pump.ts";

/** What a client pins to reach a gateway: its zone and its static X25519 public key. */
export interface TunnelEndpoint {
  zone: string;
  publicKey: Uint8Array;
}

/** The name budget the handshake fragments fit in, whatever the path allows. */
const HANDSHAKE_NAME_BUDGET = 72;
const HANDSHAKE_ATTEMPT_TIMEOUT_MS = 2_000;

export interface DnsTunnelOptions {
  kind: "doh" | "dns";
  exchanges: readonly DnsExchange[];
  tunnel: TunnelEndpoint;
  /** The longest query name to use (default 253); the factory lowers it when long names fail. */
  nameBudget?: number;
  session?: Partial<Omit<TunnelSessionConfig, "maxChunkBytes" | "maxInFlight">>;
  x25519?: X25519Provider;
  clock?: Clock;
  logger?: Logger;
}

export interface DnsTunnelTransportFactory extends TransportFactory {
  /** The name budget the next connection starts with. */
  readonly nameBudget: number;
}

/** Makes tunnel transports that share what was learned about the path (the name budget). */
export function dnsTunnelTransportFactory(options: DnsTunnelOptions): DnsTunnelTransportFactory {
  if (options.exchanges.length === 0) throw new Error("the DNS tunnel needs at least one resolver");
  const zone = normalizeZone(options.tunnel.zone);
  let budget = options.nameBudget ?? NAME_BUDGET_STEPS[0];
  return {
    kind: options.kind,
    get nameBudget() {
      return budget;
    },
    create: (handlers) =>
      new DnsTunnelTransport({ ...options, tunnel: { ...options.tunnel, zone }, nameBudget: budget }, handlers, () => {
        const lower = NAME_BUDGET_STEPS.find((step) => step < budget);
        if (lower !== undefined) {
          (options.logger ?? silentLogger).warn({ from: budget, to: lower }, "long query names fail; shortening them");
          budget = lower;
        }
      }),
  };
}

type Phase = "new" | "connecting" | "open" | "closed";

export class DnsTunnelTransport implements Transport {
  readonly kind: "doh" | "dns";
  private readonly options: DnsTunnelOptions & { nameBudget: number };
  private readonly handlers: TransportHandlers;
  private readonly onNameBudgetTooLong: () => void;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly obfuscation: Masker;
  private readonly lifetime = new AbortController();
  private readonly pump: TunnelQueryPump;
  private phase: Phase = "new";
  private reason: TransportCloseReason | undefined;
  private sid = 0;
  private keys: TunnelKeys | undefined;
  private gatewayHoldMs = 0;
  private session: TunnelSession | undefined;
  private sealer: RecordSealer | undefined;
  private opener: RecordOpener | undefined;
  private cancelWake: (() => void) | undefined;
  private wakeAtMs = Infinity;

  constructor(
    options: DnsTunnelOptions & { nameBudget: number },
    handlers: TransportHandlers,
    onNameBudgetTooLong: () => void,
  ) {
    this.kind = options.kind;
    this.options = options;
    this.handlers = handlers;
    this.onNameBudgetTooLong = onNameBudgetTooLong;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.obfuscation = obfuscationMasker(options.tunnel.publicKey, options.tunnel.zone);
    const { exchanges, nameBudget } = options;
    const pump = { exchanges, zone: options.tunnel.zone, nameBudget, obfuscation: this.obfuscation, clock: this.clock };
    this.pump = new TunnelQueryPump(pump);
  }

  /** What this connection sent and got so far. */
  get stats(): TunnelStats {
    return this.pump.stats;
  }

  get bufferedAmount(): number {
    return this.session?.bufferedBytes ?? 0;
  }

  get closeReason(): TransportCloseReason | undefined {
    return this.reason;
  }

  /** The name budget this connection runs with. */
  get nameBudget(): number {
    return this.options.nameBudget;
  }

  async connect({ signal, timeoutMs }: TransportConnectOptions): Promise<void> {
    if (this.phase !== "new") throw new Error("a DnsTunnelTransport connects once");
    if (signal.aborted) throw abortReason(signal);
    this.phase = "connecting";
    const deadlineAt = this.clock.nowMs() + timeoutMs;
    const connectAbort = AbortSignal.any([signal, this.lifetime.signal]);
    try {
      const x25519 = this.options.x25519 ?? (await selectX25519Provider());
      this.sid = randomSid();
      const handshake = await startClientHandshake(
        x25519,
        this.options.tunnel.publicKey,
        this.options.tunnel.zone,
        this.sid,
      );
      ({ keys: this.keys, holdMs: this.gatewayHoldMs } = await this.runHandshake(handshake, deadlineAt, connectAbort));
    } catch (error) {
      this.phase = "closed";
      this.reason = {
        code: CLOSE_NORMAL,
        reason: error instanceof Error ? error.message : String(error),
        isLocal: true,
      };
      this.lifetime.abort();
      throw error;
    }
    const maxChunkBytes = upstreamCapacityBytes(this.options.nameBudget, this.options.tunnel.zone) - QUERY_HEADER_BYTES;
    const maxInFlight = this.pump.maxInFlight;
    this.session = new TunnelSession({
      ...DEFAULT_TUNNEL_SESSION_CONFIG,
      ...this.options.session,
      maxChunkBytes,
      maxInFlight,
      gatewayHoldMs: this.gatewayHoldMs,
    });
    this.sealer = new RecordSealer(this.keys.upstream);
    this.opener = new RecordOpener(this.keys.downstream, MAX_FRAME_BYTES);
    this.phase = "open";
    this.logger.debug(
      { transport: this.kind, sid: this.sid, nameBudget: this.options.nameBudget },
      "tunnel session open",
    );
    this.step({ type: "tick" });
  }

  send(frame: Uint8Array): void {
    if (this.phase !== "open" || this.sealer === undefined) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "the DNS tunnel is not open");
    }
    this.step({ type: "write", bytes: this.sealer.seal(frame) });
  }

  close(code: number, reason: string): void {
    if (this.phase === "closed") return;
    const effects = this.phase === "open" ? (this.session?.step({ type: "close" }, this.clock.nowMs()) ?? []) : [];
    this.finish({ code, reason, isLocal: true });
    // Tell the gateway, best effort: the session there ends now instead of idling out.
    for (const effect of effects)
      if (effect.type === "query") this.dispatch(effect.queryId, effect.query, effect.timeoutMs);
  }

  private async runHandshake(
    handshake: ClientHandshake,
    deadlineAt: number,
    signal: AbortSignal,
  ): Promise<{ keys: TunnelKeys; holdMs: number }> {
    const { zone } = this.options.tunnel;
    const room =
      upstreamCapacityBytes(Math.min(HANDSHAKE_NAME_BUDGET, this.options.nameBudget), zone) -
      HANDSHAKE_QUERY_HEADER_BYTES;
    const message = handshake.message1;
    const fragCount = Math.ceil(message.length / room);
    if (room <= 0 || fragCount > MAX_HANDSHAKE_FRAGMENTS)
      throw new Error(`the zone ${zone} leaves no room for a handshake`);
    let lastProblem = "no answer";
    for (let attempt = 0; ; attempt += 1) {
      const remainingMs = deadlineAt - this.clock.nowMs();
      if (remainingMs <= 0) {
        throw new RemessengerError(
          ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED,
          `no tunnel handshake with ${zone} via ${this.pump.exchangeNames}: ${lastProblem}`,
        );
      }
      const attemptTimeoutMs = Math.min(remainingMs, HANDSHAKE_ATTEMPT_TIMEOUT_MS * (1 + Math.min(attempt, 3)));
      const results = await Promise.allSettled(
        Array.from({ length: fragCount }, (_, fragIndex) => {
          const query: TunnelQuery = {
            kind: "handshake",
            sid: this.sid,
            r: randomBytes(4),
            fragIndex,
            fragCount,
            fragment: message.subarray(fragIndex * room, (fragIndex + 1) * room),
          };
          return this.pump.exchange(query, { query: undefined, answer: this.obfuscation }, attemptTimeoutMs, signal);
        }),
      );
      if (signal.aborted) throw abortReason(signal);
      for (const result of results) {
        if (result.status === "fulfilled" && result.value.kind === "handshake")
          return handshake.finish(result.value.message);
        if (result.status === "rejected") {
          const failure = describeFailure(result.reason);
          if (failure === "lost-session") {
            throw new RemessengerError(
              ErrorCode.ERROR_CODE_UNAVAILABLE,
              `the tunnel gateway for ${zone} refused the handshake (wrong key or zone?)`,
            );
          }
          lastProblem = result.reason instanceof Error ? result.reason.message : String(result.reason);
        }
      }
    }
  }

  private step(event: Parameters<TunnelSession["step"]>[0]): void {
    const session = this.session;
    if (session === undefined) return;
    const effects = session.step(event, this.clock.nowMs());
    this.apply(effects);
    this.scheduleWake();
  }

  private apply(effects: readonly TunnelEffect[]): void {
    for (const effect of effects) {
      switch (effect.type) {
        case "query":
          this.dispatch(effect.queryId, effect.query, effect.timeoutMs);
          break;
        case "deliver":
          this.deliver(effect.bytes);
          break;
        case "end":
          this.onEnd(effect.end);
          break;
      }
    }
  }

  private dispatch(queryId: number, outgoing: OutgoingQuery, timeoutMs: number): void {
    const r = takeRandom(4);
    const base = { sid: this.sid, r };
    const query: TunnelQuery =
      outgoing.kind === "data"
        ? { ...base, kind: "data", seq: outgoing.seq, ack: outgoing.ack, chunk: outgoing.chunk }
        : outgoing.kind === "poll"
          ? { ...base, kind: "poll", ack: outgoing.ack, padding: outgoing.padding }
          : { ...base, kind: "close", ack: outgoing.ack };
    const answerMasker = this.keys?.answerMasker;
    if (answerMasker === undefined) return;
    const isClose = outgoing.kind === "close";
    // The close goes out after the pipe is finished: it must not die with the lifetime signal.
    const signal = isClose ? AbortSignal.timeout(timeoutMs) : this.lifetime.signal;
    this.pump.exchange(query, { query: this.keys?.queryMasker, answer: answerMasker }, timeoutMs, signal).then(
      (answer) => {
        if (!isClose) this.step({ type: "answer", queryId, answer });
      },
      (error: unknown) => {
        if (isClose || this.phase !== "open") return;
        const failure = describeFailure(error);
        this.pump.stats.failedQueries += 1;
        this.logger.debug({ transport: this.kind, failure, err: error }, "tunnel query failed");
        this.step({
          type: "failed",
          queryId,
          failure,
          ...(error instanceof QueryError && error.retryAfterMs > 0 ? { retryAfterMs: error.retryAfterMs } : {}),
        });
      },
    );
  }

  private deliver(bytes: Uint8Array): void {
    if (this.phase !== "open" || this.opener === undefined) return;
    let frames: Uint8Array[];
    try {
      frames = this.opener.push(bytes);
    } catch (error) {
      this.finishRemote(`the tunnel stream is corrupt: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    for (const frame of frames) {
      if (this.phase !== "open") return;
      this.handlers.onFrame(frame);
    }
  }

  private onEnd(end: SessionEnd): void {
    if (end.isNameBudgetTooLong) this.onNameBudgetTooLong();
    if (this.phase === "open") this.finishRemote(end.reason);
  }

  private scheduleWake(): void {
    const session = this.session;
    if (session === undefined || this.phase !== "open") return;
    const now = this.clock.nowMs();
    const at = session.nextWakeMs(now);
    if (at === undefined) return;
    if (this.cancelWake !== undefined && this.wakeAtMs <= at) return;
    this.cancelWake?.();
    this.wakeAtMs = at;
    this.cancelWake = this.clock.setTimer(
      () => {
        this.cancelWake = undefined;
        this.wakeAtMs = Infinity;
        this.step({ type: "tick" });
      },
      Math.max(0, at - now),
    );
  }

  private finishRemote(reason: string): void {
    this.finish({ code: CLOSE_ABNORMAL, reason, isLocal: false });
  }

  private finish(reason: TransportCloseReason): void {
    if (this.phase === "closed") return;
    const wasOpen = this.phase === "open";
    this.phase = "closed";
    this.reason = reason;
    this.cancelWake?.();
    this.cancelWake = undefined;
    this.lifetime.abort();
    if (wasOpen) this.handlers.onClose(reason);
  }
}

function randomSid(): number {
  const bytes = randomBytes(4);
  return (((bytes[0] ?? 0) << 24) | ((bytes[1] ?? 0) << 16) | ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 1)) >>> 0 || 1;
}
