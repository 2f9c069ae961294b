/**
 * The client's side of a DNS tunnel session after the handshake, as a state
 * machine with no I/O: `step(event, nowMs)` returns effects (queries to send,
 * bytes to deliver, the end of the session) and the shell
 * (dns-tunnel-transport.ts) does the sending, the timers and the crypto.
 *
 * What it decides:
 * - which query goes next: a retransmission or a new upstream chunk first,
 *   then polls for downstream data; every query carries the downstream ack;
 * - how many queries are in flight: starts small, grows by one for every
 *   answer that moved data, halves on a timeout or a rate limit, never above
 *   `maxInFlight` (the per-resolver budget) for data; polls fill what data
 *   leaves, and data never waits behind polls a gateway holds;
 * - polling: while data flows (either way, within `activeMs`) as many
 *   polls as bring data back (one more per poll that carried data, one fewer
 *   per empty one; every free slot when the gateway holds polls). A gateway
 *   reached through a resolver answers an empty poll at once, so after an
 *   empty poll the next one waits a gap that doubles from 1 ms to
 *   `activePollMaxGapMs` and closes on downstream data: a chat that is
 *   active but quiet costs tens of queries a second, not thousands. When
 *   idle, one poll at a time — sent again as soon as it is answered when
 *   the gateway holds polls (long poll), else at an interval that doubles
 *   from `idlePollMinMs` to `idlePollMaxMs` and snaps back on any data;
 * - loss: a failed or timed-out query's chunk is resent (same seq, same
 *   bytes); a chunk the gateway reports missing behind later ones is resent;
 * - when long names keep failing while short polls get through, it ends the
 *   session with `nameBudgetTooLong` so the shell retries with a shorter
 *   name budget (censors cap QNAME length).
 *
 * Invariants: bytes are delivered in order, each once; at most `maxInFlight`
 * data queries and 2 × `maxInFlight` queries in all are outstanding; every
 * query id is used once.
 */
import {
  type AckInfo,
  type TunnelAnswer,
  StreamReceiver,
  StreamSender,
  TUNNEL_WINDOW_CHUNKS,
} from "@remessenger/protocol";
import { RttEstimator } from "./rtt-estimator.ts";

export interface TunnelSessionConfig {
  /** Upstream bytes one data query carries (the name budget minus the header). */
  maxChunkBytes: number;
  /** The per-resolver budget of queries in flight. */
  maxInFlight: number;
  initialInFlight: number;
  windowChunks: number;
  /** Data flowed within this long: poll with every free slot. */
  activeMs: number;
  idlePollMinMs: number;
  idlePollMaxMs: number;
  /** While active, the longest gap between polls after empty answers (gateways that do not hold polls). */
  activePollMaxGapMs: number;
  /** Consecutive failed data queries (while polls succeed) that mean "names too long". */
  longNameFailures: number;
  /** How long the gateway holds an idle poll (from the handshake); > 0: keep one poll always out. */
  gatewayHoldMs: number;
}

export const DEFAULT_TUNNEL_SESSION_CONFIG: Omit<TunnelSessionConfig, "maxChunkBytes"> = {
  maxInFlight: 64,
  initialInFlight: 4,
  windowChunks: TUNNEL_WINDOW_CHUNKS,
  activeMs: 1_000,
  idlePollMinMs: 50,
  idlePollMaxMs: 500,
  activePollMaxGapMs: 16,
  longNameFailures: 6,
  gatewayHoldMs: 0,
};

export type QueryFailure = "timeout" | "servfail" | "refused" | "rate-limited" | "network" | "lost-session";

export type TunnelEvent =
  | { type: "write"; bytes: Uint8Array }
  | { type: "answer"; queryId: number; answer: TunnelAnswer }
  | { type: "failed"; queryId: number; failure: QueryFailure; retryAfterMs?: number }
  | { type: "tick" }
  | { type: "close" };

export type OutgoingQuery =
  | { kind: "data"; seq: number; ack: AckInfo; chunk: Uint8Array }
  /** `padding` > 0 makes the name as long as a full data query's: it probes the name budget. */
  | { kind: "poll"; ack: AckInfo; padding: number }
  | { kind: "close"; ack: AckInfo };

export interface SessionEnd {
  reason: string;
  /** Long names failed while short ones worked: retry with a shorter name budget. */
  isNameBudgetTooLong: boolean;
  /** The gateway does not know the session (restarted, expired): a new handshake is needed. */
  isSessionLost: boolean;
}

export type TunnelEffect =
  | { type: "query"; queryId: number; query: OutgoingQuery; timeoutMs: number }
  | { type: "deliver"; bytes: Uint8Array }
  | { type: "end"; end: SessionEnd };

interface InFlight {
  sentAtMs: number;
  seq: number | undefined;
  /** A full-length name (a data query or a padded poll): its fate tells whether long names pass. */
  isLong: boolean;
}

const FAILURE_BACKOFF_MS = 10;
const FAILURE_BACKOFF_MAX_MS = 2_000;

export class TunnelSession {
  private readonly config: TunnelSessionConfig;
  private readonly sender: StreamSender;
  private readonly receiver: StreamReceiver;
  private readonly inFlight = new Map<number, InFlight>();
  private dataInFlight = 0;
  private nextQueryId = 1;
  private window: number;
  /** Polls worth keeping out while active: +1 for a poll that brought data, -1 for one that came back empty. */
  private pollWindow = 1;
  private readonly rtt = new RttEstimator();
  private lastDataAtMs = -Infinity;
  private idlePollMs: number;
  private nextIdlePollAtMs = 0;
  /** 0 while polls bring data; after empty ones, the pause before the next poll while active. */
  private activePollGapMs = 0;
  private nextActivePollAtMs = 0;
  private pausedUntilMs = 0;
  private dataFailuresInARow = 0;
  /** Failed queries since the last answer: each one pauses new queries a little longer. */
  private failuresInARow = 0;
  /** Short queries answered since long ones started failing; the handshake was one. */
  private pollSuccessesSinceDataFailure = 1;
  /** A full-length name got an answer: the name budget works on this path. */
  private isBudgetProven = false;
  private isEnded = false;

  constructor(config: TunnelSessionConfig) {
    if (config.maxChunkBytes < 1) throw new Error("the name budget leaves no room for data");
    this.config = config;
    this.sender = new StreamSender(config.windowChunks);
    this.receiver = new StreamReceiver(config.windowChunks);
    this.window = Math.min(config.initialInFlight, config.maxInFlight);
    this.idlePollMs = config.idlePollMinMs;
  }

  /** Bytes written and not yet sent at least once. */
  get bufferedBytes(): number {
    return this.sender.queuedByteCount;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Data queries in flight (polls excluded). */
  get dataInFlightCount(): number {
    return this.dataInFlight;
  }

  get isOpen(): boolean {
    return !this.isEnded;
  }

  /** What the gateway has sent and this side received in order (for tests and stats). */
  get receivedChunks(): number {
    return this.receiver.receivedBelow;
  }

  /** Deadline of one query, from the measured round trip. */
  get queryTimeoutMs(): number {
    return this.rtt.queryTimeoutMs;
  }

  /** When the shell should call `step({type: "tick"})` next (undefined: only on events). */
  nextWakeMs(nowMs: number): number | undefined {
    if (this.isEnded) return undefined;
    if (this.pausedUntilMs > nowMs) return this.pausedUntilMs;
    // A paced poll is due (polls came back empty while active).
    const pacedAt =
      this.activePollGapMs > 0 && this.nextActivePollAtMs > nowMs && this.isActive(nowMs)
        ? this.nextActivePollAtMs
        : undefined;
    // With queries out, their answers or failures drive the next step.
    if (this.inFlight.size === 0) return Math.min(Math.max(nowMs, this.nextIdlePollAtMs), pacedAt ?? Infinity);
    return pacedAt;
  }

  step(event: TunnelEvent, nowMs: number): TunnelEffect[] {
    if (this.isEnded) return [];
    const effects: TunnelEffect[] = [];
    switch (event.type) {
      case "write":
        this.sender.write(event.bytes);
        break;
      case "answer":
        this.onAnswer(event.queryId, event.answer, nowMs, effects);
        break;
      case "failed":
        this.onFailed(event.queryId, event.failure, event.retryAfterMs ?? 0, nowMs, effects);
        break;
      case "tick":
        break;
      case "close":
        this.isEnded = true;
        effects.push({
          type: "query",
          queryId: this.takeQueryId(),
          query: { kind: "close", ack: this.receiver.ackInfo() },
          timeoutMs: this.queryTimeoutMs,
        });
        effects.push({ type: "end", end: { reason: "closed", isNameBudgetTooLong: false, isSessionLost: false } });
        return effects;
    }
    if (!this.isEnded) this.fill(nowMs, effects);
    return effects;
  }

  private onAnswer(queryId: number, answer: TunnelAnswer, nowMs: number, effects: TunnelEffect[]): void {
    const query = this.inFlight.get(queryId);
    if (query === undefined) return; // answered already, or timed out and given up
    this.settle(queryId, query);
    this.failuresInARow = 0;
    this.rtt.sample(nowMs - query.sentAtMs);
    if (answer.kind !== "data" && answer.kind !== "empty") {
      this.end(effects, "the gateway answered a session query with a handshake answer", false, true);
      return;
    }
    if (query.isLong) {
      this.dataFailuresInARow = 0;
      this.isBudgetProven = true;
    } else {
      this.pollSuccessesSinceDataFailure += 1;
    }
    const acked = this.sender.onAck(answer.ack, nowMs, this.rtt.reorderMs);
    let hasMovedData = acked.newlyAcked > 0;
    if (answer.kind === "data") {
      const result = this.receiver.receive(answer.seq, answer.chunk, (bytes) => {
        effects.push({ type: "deliver", bytes });
      });
      if (result === "delivered" || result === "buffered") hasMovedData = true;
    }
    if (query.seq === undefined) {
      this.pollWindow =
        answer.kind === "data"
          ? Math.min(this.config.maxInFlight, this.pollWindow + 1)
          : Math.max(1, this.pollWindow - 1);
    }
    this.activePollGapMs =
      answer.kind === "data"
        ? 0
        : query.seq === undefined
          ? Math.min(this.config.activePollMaxGapMs, Math.max(1, this.activePollGapMs * 2))
          : this.activePollGapMs;
    if (hasMovedData) {
      this.lastDataAtMs = nowMs;
      this.idlePollMs = this.config.idlePollMinMs;
      this.window = Math.min(this.config.maxInFlight, this.window + 1);
    } else if (query.seq === undefined && !this.isActive(nowMs)) {
      // A gateway that holds polls paces them itself: ask again at once, so a push never waits for a poll.
      this.idlePollMs =
        this.config.gatewayHoldMs > 0 ? 0 : Math.min(this.config.idlePollMaxMs, Math.max(1, this.idlePollMs * 2));
    }
  }

  private onFailed(
    queryId: number,
    failure: QueryFailure,
    retryAfterMs: number,
    nowMs: number,
    effects: TunnelEffect[],
  ): void {
    const query = this.inFlight.get(queryId);
    if (query === undefined) return;
    this.settle(queryId, query);
    if (failure === "lost-session") {
      this.end(effects, "the gateway no longer knows this tunnel session", false, true);
      return;
    }
    if (query.seq !== undefined) this.sender.markLost(query.seq);
    if (query.isLong) {
      this.dataFailuresInARow += 1;
      if (
        this.dataFailuresInARow >= this.config.longNameFailures &&
        this.pollSuccessesSinceDataFailure > 0 &&
        (failure === "timeout" || failure === "servfail")
      ) {
        this.end(effects, `long query names fail (${failure}) while short ones get through`, true, false);
        return;
      }
      if (this.dataFailuresInARow === 1) this.pollSuccessesSinceDataFailure = 0;
    }
    if (failure === "timeout" || failure === "rate-limited" || failure === "refused" || failure === "servfail") {
      this.window = Math.max(1, this.window / 2);
    }
    // A path that fails at once (refused, unreachable) must not turn into a busy loop; a timeout
    // has waited already, and pausing after it would only stall a lossy path further.
    if (failure !== "timeout") {
      this.failuresInARow += 1;
      const backoffMs = Math.min(
        FAILURE_BACKOFF_MAX_MS,
        FAILURE_BACKOFF_MS * 2 ** Math.min(this.failuresInARow - 1, 10),
      );
      this.pausedUntilMs = Math.max(this.pausedUntilMs, nowMs + Math.max(retryAfterMs, backoffMs));
    }
  }

  private fill(nowMs: number, effects: TunnelEffect[]): void {
    if (nowMs < this.pausedUntilMs) return;
    const limit = Math.max(1, Math.floor(this.window));
    const rtoMs = this.queryTimeoutMs * 2;
    // Data never waits behind polls (a gateway may hold those for a while): it has its own share of the window.
    while (this.dataInFlight < limit && this.inFlight.size < 2 * this.config.maxInFlight) {
      const chunk = this.sender.nextChunk(this.config.maxChunkBytes, nowMs, rtoMs);
      if (chunk === undefined) break;
      this.lastDataAtMs = nowMs;
      this.send(
        effects,
        nowMs,
        { kind: "data", seq: chunk.seq, ack: this.receiver.ackInfo(), chunk: chunk.bytes },
        chunk.seq,
        chunk.bytes.length === this.config.maxChunkBytes,
      );
    }
    if (
      !this.isBudgetProven &&
      ![...this.inFlight.values()].some((query) => query.isLong) &&
      this.inFlight.size < limit
    ) {
      const padding = this.config.maxChunkBytes;
      this.send(effects, nowMs, { kind: "poll", ack: this.receiver.ackInfo(), padding }, undefined, true);
    }
    // Long names failing: keep one short poll going too, to tell "names too long" from "path down".
    if (this.dataFailuresInARow > 0 && ![...this.inFlight.values()].some((query) => !query.isLong)) {
      this.send(effects, nowMs, { kind: "poll", ack: this.receiver.ackInfo(), padding: 0 }, undefined, false);
    }
    if (this.isActive(nowMs)) {
      // As many polls as downstream data keeps busy (a held poll costs nothing, so then the whole window).
      const polls = this.config.gatewayHoldMs > 0 ? limit : Math.min(limit, Math.floor(this.pollWindow));
      const isPaced = this.config.gatewayHoldMs === 0 && this.activePollGapMs > 0;
      while (this.inFlight.size - this.dataInFlight < polls) {
        if (isPaced && nowMs < this.nextActivePollAtMs) break;
        this.send(effects, nowMs, { kind: "poll", ack: this.receiver.ackInfo(), padding: 0 }, undefined, false);
        if (isPaced) this.nextActivePollAtMs = nowMs + this.activePollGapMs;
      }
      this.nextIdlePollAtMs = nowMs + this.idlePollMs;
      return;
    }
    if (this.inFlight.size === 0 && nowMs >= this.nextIdlePollAtMs) {
      this.send(effects, nowMs, { kind: "poll", ack: this.receiver.ackInfo(), padding: 0 }, undefined, false);
      this.nextIdlePollAtMs = nowMs + this.idlePollMs;
    }
  }

  private send(
    effects: TunnelEffect[],
    nowMs: number,
    query: OutgoingQuery,
    seq: number | undefined,
    isLong: boolean,
  ): void {
    const queryId = this.takeQueryId();
    this.inFlight.set(queryId, { sentAtMs: nowMs, seq, isLong });
    if (seq !== undefined) this.dataInFlight += 1;
    effects.push({ type: "query", queryId, query, timeoutMs: this.queryTimeoutMs });
  }

  private settle(queryId: number, query: InFlight): void {
    this.inFlight.delete(queryId);
    if (query.seq !== undefined) this.dataInFlight -= 1;
  }

  private takeQueryId(): number {
    const id = this.nextQueryId;
    this.nextQueryId += 1;
    return id;
  }

  private isActive(nowMs: number): boolean {
    return nowMs - this.lastDataAtMs < this.config.activeMs || !this.sender.isIdle;
  }

  private end(effects: TunnelEffect[], reason: string, isNameBudgetTooLong: boolean, isSessionLost: boolean): void {
    this.isEnded = true;
    effects.push({ type: "end", end: { reason, isNameBudgetTooLong, isSessionLost } });
  }
}
