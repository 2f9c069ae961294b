/**
 * The DNS tunnel's query pump: one tunnel query out as a DNS question on one
 * of the resolvers (DoH or plain DNS), its TXT answer back as a tunnel
 * answer, counted in the connection's stats. The transport shell
 * (dns-tunnel-transport.ts) decides what to send and when; this only moves
 * and checks bytes.
 *
 * Invariants:
 * - Resolvers are used round-robin, skipping one that is paused (it said
 *   rate-limited, for as long as it asked) or full (its maxInFlight); when
 *   all are, the next in turn is used anyway.
 * - Every query has a fresh random DNS id and nonce (no resolver cache can
 *   answer it), and an answer must match the id, carry NOERROR and a TXT
 *   record that decodes for this query; anything else rejects with a
 *   QueryError whose `failure` the session understands.
 */
import {
  DNS_TYPE_TXT,
  EDNS_BUFFER_BYTES,
  ErrorCode,
  type Masker,
  RCODE_NOERROR,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  RemessengerError,
  type TunnelAnswer,
  type TunnelQuery,
  decodeAnswer,
  decodeDnsMessage,
  downstreamCapacityBytes,
  encodeDnsQuery,
  encodeQuery,
  encodeTunnelName,
  fromTxtStrings,
  randomBytes,
  upstreamCapacityBytes,
} from "@remessenger/protocol";
import type { Clock } from "../runtime/clock.ts";
import { type DnsExchange, DnsExchangeError } from "./dns-exchange.ts";
import type { QueryFailure } from "./tunnel-session.ts";

/** What one tunnel connection sent and got, for the connection state and the benchmark. */
export interface TunnelStats {
  handshakeQueries: number;
  dataQueries: number;
  pollQueries: number;
  failedQueries: number;
  /** Upstream chunk bytes in data queries (retransmissions included). */
  upstreamPayloadBytes: number;
  /** The most those data queries' names could have carried at this name budget. */
  upstreamCapacityBytes: number;
  /** Answers that carried a downstream chunk. */
  dataAnswers: number;
  downstreamPayloadBytes: number;
  /** The most those answers could have carried (EDNS0 1232, owner name compressed). */
  downstreamCapacityBytes: number;
}

/** The masks of one query: the session's once the handshake made them (none before), and its answer's. */
export interface QueryMasks {
  query: Masker | undefined;
  answer: Masker;
}

export interface TunnelQueryPumpOptions {
  exchanges: readonly DnsExchange[];
  /** The tunnel zone, normalized. */
  zone: string;
  nameBudget: number;
  /** The masker every query name is obfuscated with (from the gateway key and zone). */
  obfuscation: Masker;
  clock: Clock;
}

export class TunnelQueryPump {
  readonly stats: TunnelStats = {
    handshakeQueries: 0,
    dataQueries: 0,
    pollQueries: 0,
    failedQueries: 0,
    upstreamPayloadBytes: 0,
    upstreamCapacityBytes: 0,
    dataAnswers: 0,
    downstreamPayloadBytes: 0,
    downstreamCapacityBytes: 0,
  };
  private readonly options: TunnelQueryPumpOptions;
  private readonly inFlightPerExchange = new Map<DnsExchange, number>();
  private readonly pausedUntil = new Map<DnsExchange, number>();
  private nextExchange = 0;

  constructor(options: TunnelQueryPumpOptions) {
    this.options = options;
    for (const exchange of options.exchanges) this.inFlightPerExchange.set(exchange, 0);
  }

  /** The resolvers, for messages. */
  get exchangeNames(): string {
    return this.options.exchanges.map((exchange) => exchange.name).join(", ");
  }

  /** How many queries may be in flight at once over all resolvers. */
  get maxInFlight(): number {
    return this.options.exchanges.reduce((sum, exchange) => sum + exchange.maxInFlight, 0);
  }

  /** Sends one tunnel query and decodes its answer; rejects with a QueryError. */
  async exchange(query: TunnelQuery, masks: QueryMasks, timeoutMs: number, signal: AbortSignal): Promise<TunnelAnswer> {
    const exchange = this.pickExchange();
    const bytes = encodeQuery(query, this.options.obfuscation, masks.query);
    const name = encodeTunnelName(bytes, this.options.zone, this.options.nameBudget);
    this.count(query);
    const idBytes = takeRandom(2);
    const id = ((idBytes[0] ?? 0) << 8) | (idBytes[1] ?? 0);
    const message = encodeDnsQuery({ id, name, type: DNS_TYPE_TXT, ednsUdpBytes: EDNS_BUFFER_BYTES });
    this.inFlightPerExchange.set(exchange, (this.inFlightPerExchange.get(exchange) ?? 0) + 1);
    let responseBytes: Uint8Array;
    try {
      responseBytes = await exchange.exchange(message, { signal, timeoutMs });
    } catch (error) {
      if (error instanceof DnsExchangeError && error.failure === "rate-limited") {
        this.pausedUntil.set(exchange, this.options.clock.nowMs() + error.retryAfterMs);
      }
      throw toQueryError(error);
    } finally {
      this.inFlightPerExchange.set(exchange, Math.max(0, (this.inFlightPerExchange.get(exchange) ?? 1) - 1));
    }
    let response;
    try {
      response = decodeDnsMessage(responseBytes);
    } catch (cause) {
      throw new QueryError("servfail", `undecodable DNS response from ${exchange.name}`, { cause });
    }
    if (!response.isResponse || response.id !== id)
      throw new QueryError("servfail", `mismatched DNS response from ${exchange.name}`);
    if (response.rcode === RCODE_NXDOMAIN) throw new QueryError("lost-session", "NXDOMAIN");
    if (response.rcode === RCODE_REFUSED) throw new QueryError("refused", `REFUSED by ${exchange.name}`);
    if (response.rcode !== RCODE_NOERROR)
      throw new QueryError("servfail", `rcode ${response.rcode} from ${exchange.name}`);
    const txt = response.answers.find((record) => record.type === DNS_TYPE_TXT && record.txt !== undefined);
    if (txt?.txt === undefined) throw new QueryError("servfail", `no TXT answer from ${exchange.name}`);
    try {
      const answer = decodeAnswer(fromTxtStrings(txt.txt), query.r, query.sid, masks.answer);
      if (answer.kind === "data") {
        this.stats.dataAnswers += 1;
        this.stats.downstreamPayloadBytes += answer.chunk.length;
        this.stats.downstreamCapacityBytes += downstreamCapacityBytes(name.length, EDNS_BUFFER_BYTES);
      }
      return answer;
    } catch (cause) {
      throw new QueryError("servfail", `undecodable tunnel answer via ${exchange.name}`, { cause });
    }
  }

  private count(query: TunnelQuery): void {
    const { stats } = this;
    switch (query.kind) {
      case "handshake":
        stats.handshakeQueries += 1;
        break;
      case "data":
        stats.dataQueries += 1;
        stats.upstreamPayloadBytes += query.chunk.length;
        stats.upstreamCapacityBytes += upstreamCapacityBytes(this.options.nameBudget, this.options.zone);
        break;
      case "poll":
      case "close":
        stats.pollQueries += 1;
        break;
    }
  }

  private pickExchange(): DnsExchange {
    const exchanges = this.options.exchanges;
    const now = this.options.clock.nowMs();
    for (let i = 0; i < exchanges.length; i += 1) {
      const exchange = exchanges[(this.nextExchange + i) % exchanges.length];
      if (exchange === undefined) continue;
      if ((this.pausedUntil.get(exchange) ?? 0) > now) continue;
      if ((this.inFlightPerExchange.get(exchange) ?? 0) >= exchange.maxInFlight) continue;
      this.nextExchange = (this.nextExchange + i + 1) % exchanges.length;
      return exchange;
    }
    const fallback = exchanges[this.nextExchange % exchanges.length] ?? exchanges[0];
    this.nextExchange += 1;
    if (fallback === undefined) throw new Error("no resolver");
    return fallback;
  }
}

export class QueryError extends RemessengerError {
  override readonly name = "QueryError";
  readonly failure: QueryFailure;

  constructor(failure: QueryFailure, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(
      failure === "rate-limited" ? ErrorCode.ERROR_CODE_RATE_LIMITED : ErrorCode.ERROR_CODE_UNAVAILABLE,
      message,
      options,
    );
    this.failure = failure;
  }
}

function toQueryError(error: unknown): QueryError {
  if (error instanceof DnsExchangeError) {
    const failure: QueryFailure =
      error.failure === "timeout" ? "timeout" : error.failure === "rate-limited" ? "rate-limited" : "network";
    return new QueryError(failure, error.message, { cause: error, retryAfterMs: error.retryAfterMs });
  }
  return new QueryError("network", error instanceof Error ? error.message : String(error), { cause: error });
}

export function describeFailure(error: unknown): QueryFailure {
  return error instanceof QueryError ? error.failure : "network";
}

/** Random bytes from a pool refilled 4 KiB at a time: two draws per query add up at thousands of queries a second. */
let pool: Uint8Array = new Uint8Array(0);
let poolAt = 0;
export function takeRandom(n: number): Uint8Array {
  if (poolAt + n > pool.length) {
    pool = randomBytes(4096);
    poolAt = 0;
  }
  const out = pool.slice(poolAt, poolAt + n);
  poolAt += n;
  return out;
}
