/**
 * The authoritative DNS gateway of the tunnel zone, whatever carries the
 * message (UDP, TCP, DoH): one DNS query in, one DNS response out.
 *
 * - Only its zone: anything else is REFUSED (never an open resolver).
 * - Apex SOA and NS answers, NODATA for other types under the zone (QNAME
 *   minimisation probes get an answer at once, never NXDOMAIN, which would
 *   cut the tree for the resolver).
 * - Tunnel queries are TXT; undecodable names and unknown sessions get
 *   NXDOMAIN, malformed messages FORMERR, other opcodes and ANY NOTIMP.
 * - The question is echoed byte for byte (0x20 case randomisation), and
 *   identical queries get identical answers from a short answer cache, also
 *   while the first is still being answered: a resolver's retry never
 *   advances a session twice.
 * - Responses fit the requester's EDNS0 size (512 without EDNS0): tunnel
 *   answers are cut to fit; anything else too big goes out with TC set.
 * - Each source address has a token bucket; over it, REFUSED (DoH: 429).
 * Nothing a peer sends can throw out of `handle`.
 */
import dnsPacket from "dns-packet";
import type { Logger } from "pino";
import {
  answerClientHandshake,
  obfuscationMasker,
  concat,
  equalBytes,
  TunnelNameError,
  decodeTunnelName,
  downstreamCapacityBytes,
  isInZone,
  DNS_TYPE_ANY,
  DNS_TYPE_NS,
  DNS_TYPE_SOA,
  DNS_TYPE_TXT,
  DNS_UDP_DEFAULT_BYTES,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NOTIMP,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  RCODE_SERVFAIL,
  encodeDnsResponse,
  toTxtStrings,
  TunnelPacketError,
  decodeQuery,
  encodeAnswer,
  peekQuery,
  readHandshakeQuery,
  type X25519Provider,
  type ResourceRecord,
  type Masker,
  type TunnelAnswer,
  type TunnelQuery,
} from "@remessenger/protocol";
import type { Clock } from "../core/clock.ts";
import type { Messenger } from "../core/messenger.ts";
import { GatewaySession } from "./tunnel-gateway-session.ts";

export interface TunnelStaticKey {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

export interface TunnelGatewayOptions {
  zone: string;
  key: TunnelStaticKey;
  x25519: X25519Provider;
  messenger: Messenger;
  clock: Clock;
  log: Logger;
  /** Longest a poll with nothing to answer is held (0: answer at once); only for direct DoH clients. */
  holdMs: number;
  /** Queries per second per source address (burst: twice that). */
  rateLimitPerSecond: number;
}

export type Carrier = "udp" | "tcp" | "doh";

export interface GatewayRequest {
  bytes: Uint8Array;
  source: string;
  carrier: Carrier;
}

export type GatewayResponse = { kind: "answer"; bytes: Uint8Array } | { kind: "drop" } | { kind: "rate-limited" };

/** The largest response we ever build, whatever the requester allows. */
const MAX_RESPONSE_BYTES = 4096;
const ANSWER_CACHE_MS = 30_000;
const MAX_ANSWER_CACHE = 50_000;
const MAX_SESSIONS = 10_000;
const SESSION_IDLE_MS = 180_000;
const HANDSHAKE_TTL_MS = 30_000;
const MAX_PENDING_HANDSHAKES = 1_000;
const MAX_RATE_SOURCES = 10_000;
const SOA_TTL_S = 300;

interface CachedAnswer {
  atMs: number;
  /** Resolves with the response's records and rcode, built once. */
  result: Promise<{ rcode: number; answers: ResourceRecord[]; authority: ResourceRecord[] }>;
}

interface PendingHandshake {
  fragments: (Uint8Array | undefined)[];
  atMs: number;
  /** Message 2 once answered (late fragments and retries get it again). */
  reply: Promise<Uint8Array | undefined> | undefined;
  message1: Uint8Array | undefined;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

export class TunnelGateway {
  readonly zone: string;
  private readonly options: TunnelGatewayOptions;
  private readonly obfuscation: Masker;
  private readonly sessions = new Map<number, GatewaySession>();
  private readonly handshakes = new Map<number, PendingHandshake>();
  private readonly cache = new Map<string, CachedAnswer>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly sweeper: NodeJS.Timeout;
  /** Counters for logs and the benchmark. */
  readonly stats = { queries: 0, tunnelQueries: 0, cacheHits: 0, refused: 0, formErr: 0, nxdomain: 0, rateLimited: 0 };

  constructor(options: TunnelGatewayOptions) {
    this.options = options;
    this.zone = options.zone;
    this.obfuscation = obfuscationMasker(options.key.publicKey, options.zone);
    this.sweeper = setInterval(() => {
      this.sweep();
    }, 5_000);
    this.sweeper.unref();
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const session of [...this.sessions.values()]) session.close("gateway shutting down");
  }

  async handle(request: GatewayRequest): Promise<GatewayResponse> {
    try {
      return await this.handleUnsafe(request);
    } catch (error) {
      this.options.log.error({ err: error, carrier: request.carrier }, "DNS gateway failed on a query");
      const id = readId(request.bytes);
      if (id === undefined) return { kind: "drop" };
      return {
        kind: "answer",
        bytes: encodeDnsResponse({ id, rcode: RCODE_SERVFAIL, isAuthoritative: true, recursionDesired: false }),
      };
    }
  }

  private async handleUnsafe({ bytes, source, carrier }: GatewayRequest): Promise<GatewayResponse> {
    this.stats.queries += 1;
    const id = readId(bytes);
    if (id === undefined) return { kind: "drop" };
    if ((bytes[2] ?? 0) & 0x80) return { kind: "drop" }; // a response: never answer one
    if (!this.takeToken(source)) {
      this.stats.rateLimited += 1;
      if (carrier === "doh") return { kind: "rate-limited" };
      return {
        kind: "answer",
        bytes: encodeDnsResponse({ id, rcode: RCODE_REFUSED, isAuthoritative: false, recursionDesired: false }),
      };
    }
    let packet: dnsPacket.Packet;
    try {
      packet = dnsPacket.decode(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    } catch {
      this.stats.formErr += 1;
      return this.bare(id, RCODE_FORMERR);
    }
    const recursionDesired = ((bytes[2] ?? 0) & 0x01) !== 0;
    const opcode = ((bytes[2] ?? 0) >>> 3) & 0x0f;
    if (opcode !== 0) return this.bare(id, RCODE_NOTIMP, recursionDesired);
    const questionRaw = rawQuestion(bytes);
    const question = packet.questions?.[0];
    if (packet.questions?.length !== 1 || question === undefined || questionRaw === undefined) {
      this.stats.formErr += 1;
      return this.bare(id, RCODE_FORMERR, recursionDesired);
    }
    const opt = packet.additionals?.find((record): record is dnsPacket.OptAnswer => record.type === "OPT");
    const ednsUdpBytes = opt === undefined ? undefined : Math.max(DNS_UDP_DEFAULT_BYTES, opt.udpPayloadSize);
    const limit = Math.min(
      MAX_RESPONSE_BYTES,
      carrier === "udp" ? (ednsUdpBytes ?? DNS_UDP_DEFAULT_BYTES) : (ednsUdpBytes ?? 1232),
    );
    const respond = (
      rcode: number,
      answers: ResourceRecord[] = [],
      authority: ResourceRecord[] = [],
    ): GatewayResponse => {
      const common = {
        id,
        questionRaw,
        recursionDesired,
        isAuthoritative: rcode !== RCODE_REFUSED,
      };
      const edns = opt === undefined ? {} : { ednsUdpBytes: MAX_RESPONSE_BYTES };
      let response = encodeDnsResponse({ ...common, ...edns, rcode, answers, authority });
      if (response.length > limit) {
        response = encodeDnsResponse({ ...common, ...edns, rcode, isTruncated: true });
      }
      return { kind: "answer", bytes: response };
    };
    const name = question.name;
    const klass = (question as { class?: string }).class ?? "IN";
    if (!isInZone(name, this.zone) || klass !== "IN") {
      this.stats.refused += 1;
      return respond(RCODE_REFUSED);
    }
    const qtype = typeCode(question.type);
    if (qtype === DNS_TYPE_ANY) return respond(RCODE_NOTIMP);
    const isApex = name.toLowerCase().replace(/\.$/, "") === this.zone;
    if (isApex) {
      if (qtype === DNS_TYPE_SOA) return respond(RCODE_NOERROR, [this.soa()]);
      if (qtype === DNS_TYPE_NS) return respond(RCODE_NOERROR, [this.ns()]);
      return respond(RCODE_NOERROR, [], [this.soa()]);
    }
    if (qtype !== DNS_TYPE_TXT) return respond(RCODE_NOERROR, [], [this.soa()]);

    this.stats.tunnelQueries += 1;
    const key = `${name.toLowerCase()}/${limit}`;
    const now = this.options.clock.nowMs();
    let cached = this.cache.get(key);
    if (cached !== undefined && now - cached.atMs < ANSWER_CACHE_MS) {
      this.stats.cacheHits += 1;
    } else {
      const roomBytes = downstreamCapacityBytes(name.replace(/\.$/, "").length, limit, opt !== undefined);
      cached = { atMs: now, result: this.tunnel(name, roomBytes, carrier) };
      this.cache.set(key, cached);
      if (this.cache.size > MAX_ANSWER_CACHE) this.trimCache();
    }
    const result = await cached.result;
    if (result.rcode === RCODE_NXDOMAIN) this.stats.nxdomain += 1;
    return respond(result.rcode, result.answers, result.authority);
  }

  /** Answers one tunnel TXT query: records and rcode. */
  private async tunnel(
    name: string,
    roomBytes: number,
    carrier: Carrier,
  ): Promise<{ rcode: number; answers: ResourceRecord[]; authority: ResourceRecord[] }> {
    const nxdomain = { rcode: RCODE_NXDOMAIN, answers: [], authority: [this.soa()] };
    let bytes: Uint8Array;
    let query: TunnelQuery;
    let sid: number;
    let r: Uint8Array;
    try {
      bytes = decodeTunnelName(name, this.zone);
      ({ sid, r } = peekQuery(bytes, this.obfuscation));
      const session = this.sessions.get(sid);
      query =
        (session?.isOpen === true ? this.resentHandshake(bytes, sid) : undefined) ??
        decodeQuery(bytes, this.obfuscation, session?.isOpen === true ? sessionMasker(session) : undefined);
    } catch (error) {
      if (error instanceof TunnelNameError || error instanceof TunnelPacketError) return nxdomain;
      throw error;
    }
    let answer: TunnelAnswer;
    let masker: Masker;
    if (query.kind === "handshake") {
      const reply = await this.onHandshake(query, carrier);
      if (reply === undefined) return nxdomain;
      answer = reply === "pending" ? { kind: "pending" } : { kind: "handshake", message: reply };
      masker = this.obfuscation;
    } else {
      const session = this.sessions.get(sid);
      if (session === undefined || !session.isOpen) return nxdomain;
      answer = await session.handle(query, roomBytes);
      masker = session.keys.answerMasker;
    }
    const payload = encodeAnswer(answer, r, sid, masker);
    return {
      rcode: RCODE_NOERROR,
      answers: [{ name, ttl: 0, data: { type: "TXT", strings: toTxtStrings(payload) } }],
      authority: [],
    };
  }

  /**
   * A handshake fragment the client sent again (with a new nonce) after its
   * session opened. The session's masks read such a query as a data, poll or
   * close query 3 times in 256, which would feed the session garbage or end
   * it; a fragment byte for byte equal to one the pending handshake holds is
   * the handshake, so it is recognised first.
   */
  private resentHandshake(bytes: Uint8Array, sid: number): TunnelQuery | undefined {
    const pending = this.handshakes.get(sid);
    if (pending === undefined) return undefined;
    const query = readHandshakeQuery(bytes, this.obfuscation);
    if (query === undefined || pending.fragments.length !== query.fragCount) return undefined;
    const known = pending.fragments[query.fragIndex];
    return known !== undefined && equalBytes(known, query.fragment) ? query : undefined;
  }

  private async onHandshake(
    query: Extract<TunnelQuery, { kind: "handshake" }>,
    carrier: Carrier,
  ): Promise<Uint8Array | "pending" | undefined> {
    const now = this.options.clock.nowMs();
    let pending = this.handshakes.get(query.sid);
    if (pending !== undefined && pending.fragments.length !== query.fragCount) return undefined;
    if (pending === undefined) {
      if (this.handshakes.size >= MAX_PENDING_HANDSHAKES) return undefined;
      pending = {
        fragments: new Array<Uint8Array | undefined>(query.fragCount).fill(undefined),
        atMs: now,
        reply: undefined,
        message1: undefined,
      };
      this.handshakes.set(query.sid, pending);
    }
    const known = pending.fragments[query.fragIndex];
    if (known !== undefined && !equalBytes(known, query.fragment)) return undefined;
    pending.fragments[query.fragIndex] = query.fragment;
    if (pending.reply === undefined) {
      if (pending.fragments.some((fragment) => fragment === undefined)) return "pending";
      const message1 = concat(...pending.fragments.filter((fragment) => fragment !== undefined));
      pending.message1 = message1;
      pending.reply = this.accept(query.sid, message1, carrier);
    }
    return pending.reply;
  }

  /**
   * Opens a session. Polls are held (long poll) only for clients that reach
   * us over DoH directly: a recursive resolver mixes our fast answers and the
   * held ones into one round-trip estimate, times the held ones out and
   * retries them, and backs off from the gateway (seen with Unbound).
   */
  private async accept(sid: number, message1: Uint8Array, carrier: Carrier): Promise<Uint8Array | undefined> {
    if (this.sessions.has(sid) || this.sessions.size >= MAX_SESSIONS) return undefined;
    const holdMs = carrier === "doh" ? this.options.holdMs : 0;
    const { x25519, key, zone } = { ...this.options, zone: this.zone };
    let result;
    try {
      result = await answerClientHandshake(x25519, key.privateKey, key.publicKey, zone, sid, message1, holdMs);
    } catch (error) {
      this.options.log.debug({ err: error, sid }, "tunnel handshake refused");
      return undefined;
    }
    const session = new GatewaySession({
      sid,
      keys: result.keys,
      messenger: this.options.messenger,
      clock: this.options.clock,
      log: this.options.log.child({ transport: "dns-tunnel", sid }),
      holdMs,
      onClosed: (closed) => {
        if (this.sessions.get(closed) === session) this.sessions.delete(closed);
      },
    });
    this.sessions.set(sid, session);
    return result.message2;
  }

  private soa(): ResourceRecord {
    return {
      name: this.zone,
      ttl: SOA_TTL_S,
      data: {
        type: "SOA",
        soa: {
          mname: `ns.${this.zone}`,
          rname: `hostmaster.${this.zone}`,
          serial: 1,
          refresh: 3600,
          retry: 600,
          expire: 86_400,
          // Negative answers must not be cached: every tunnel name is new, and a cached NXDOMAIN helps no one.
          minimum: 0,
        },
      },
    };
  }

  private ns(): ResourceRecord {
    return { name: this.zone, ttl: SOA_TTL_S, data: { type: "NS", ns: `ns.${this.zone}` } };
  }

  private bare(id: number, rcode: number, recursionDesired = false): GatewayResponse {
    return { kind: "answer", bytes: encodeDnsResponse({ id, rcode, isAuthoritative: false, recursionDesired }) };
  }

  private takeToken(source: string): boolean {
    const rate = this.options.rateLimitPerSecond;
    if (rate <= 0) return true;
    const now = this.options.clock.nowMs();
    let bucket = this.buckets.get(source);
    if (bucket === undefined) {
      if (this.buckets.size >= MAX_RATE_SOURCES) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
      bucket = { tokens: 2 * rate, atMs: now };
      this.buckets.set(source, bucket);
    }
    bucket.tokens = Math.min(2 * rate, bucket.tokens + ((now - bucket.atMs) * rate) / 1000);
    bucket.atMs = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  private trimCache(): void {
    const now = this.options.clock.nowMs();
    for (const [key, entry] of this.cache) {
      if (this.cache.size <= MAX_ANSWER_CACHE / 2 && now - entry.atMs < ANSWER_CACHE_MS) break;
      this.cache.delete(key);
    }
  }

  private sweep(): void {
    const now = this.options.clock.nowMs();
    for (const [key, entry] of this.cache) {
      if (now - entry.atMs < ANSWER_CACHE_MS) break;
      this.cache.delete(key);
    }
    for (const [sid, pending] of this.handshakes) {
      if (now - pending.atMs > HANDSHAKE_TTL_MS) this.handshakes.delete(sid);
    }
    for (const session of [...this.sessions.values()]) {
      if (now - session.lastSeenMs > SESSION_IDLE_MS) session.close("idle");
    }
  }
}

function sessionMasker(session: GatewaySession): Masker {
  return session.keys.queryMasker;
}

function readId(bytes: Uint8Array): number | undefined {
  if (bytes.length < 12) return undefined;
  return ((bytes[0] ?? 0) << 8) | (bytes[1] ?? 0);
}

/** The question's bytes as sent (name, type, class), or undefined when its name is compressed or runs out. */
export function rawQuestion(bytes: Uint8Array): Uint8Array | undefined {
  let at = 12;
  for (let labels = 0; labels < 128; labels += 1) {
    const length = bytes[at];
    if (length === undefined) return undefined;
    if (length === 0) {
      const end = at + 1 + 4;
      return end <= bytes.length ? bytes.slice(12, end) : undefined;
    }
    if (length > 63) return undefined;
    at += 1 + length;
  }
  return undefined;
}

const TYPE_CODES: Record<string, number> = { A: 1, NS: 2, SOA: 6, TXT: 16, AAAA: 28, ANY: 255 };

function typeCode(type: string): number {
  const known = TYPE_CODES[type];
  if (known !== undefined) return known;
  const match = /^UNKNOWN_(\d+)$/.exec(type);
  return match === null ? -1 : Number(match[1]);
}
