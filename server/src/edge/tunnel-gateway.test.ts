import { mkdtempSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import dnsPacket from "dns-packet";
import fc from "fast-check";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  selectX25519Provider,
  obfuscationMasker,
  startClientHandshake,
  DNS_TYPE_SOA,
  DNS_TYPE_TXT,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NOTIMP,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  decodeDnsMessage,
  encodeDnsQuery,
  fromTxtStrings,
  encodeTunnelName,
  type Masker,
  type TunnelAnswer,
  type TunnelQuery,
  decodeAnswer,
  decodeQuery,
  encodeQuery,
} from "@remessenger/protocol";
import { systemClock } from "../core/clock.ts";
import { Messenger } from "../core/messenger.ts";
import { LocalPushBus } from "../core/push-bus.ts";
import { SqliteStore } from "../store/sqlite-store.ts";
import { type GatewayResponse, TunnelGateway } from "./tunnel-gateway.ts";

const ZONE = "t.example";
let dir: string;
let store: SqliteStore;
let gateway: TunnelGateway;
let gatewayPublicKey: Uint8Array;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "remessenger-gateway-"));
  store = await SqliteStore.open({ dataDir: dir });
  const log = pino({ level: "silent" });
  const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
  const messenger = new Messenger({
    store,
    bus: new LocalPushBus(),
    clock: systemClock,
    random,
    secret: random(32),
    log,
  });
  const x25519 = await selectX25519Provider();
  const keys = await x25519.generateKeyPair();
  gatewayPublicKey = keys.publicKey;
  gateway = new TunnelGateway({
    zone: ZONE,
    key: keys,
    x25519,
    messenger,
    clock: systemClock,
    log,
    holdMs: 0,
    rateLimitPerSecond: 0,
  });
});

afterAll(async () => {
  gateway.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function ask(bytes: Uint8Array, carrier: "udp" | "tcp" | "doh" = "udp"): Promise<GatewayResponse> {
  return gateway.handle({ bytes, source: "192.0.2.1", carrier });
}

async function rcodeOf(bytes: Uint8Array): Promise<number> {
  const response = await ask(bytes);
  if (response.kind !== "answer") throw new Error(`no answer: ${response.kind}`);
  return decodeDnsMessage(response.bytes).rcode;
}

function query(name: string, type: number, edns: number | undefined = 1232): Uint8Array {
  return encodeDnsQuery({ id: 0x4242, name, type, ...(edns === undefined ? {} : { ednsUdpBytes: edns }) });
}

/** Sends a tunnel query as a TXT question and decodes the tunnel answer in the response. */
async function tunnelAnswer(
  packet: TunnelQuery,
  queryMasker: Masker | undefined,
  answerMasker: Masker,
): Promise<TunnelAnswer> {
  const obfuscation = obfuscationMasker(gatewayPublicKey, ZONE);
  const name = encodeTunnelName(encodeQuery(packet, obfuscation, queryMasker), ZONE);
  const response = await ask(query(name, DNS_TYPE_TXT));
  if (response.kind !== "answer") throw new Error(`no answer: ${response.kind}`);
  const txt = decodeDnsMessage(response.bytes).answers[0]?.txt;
  if (txt === undefined) throw new Error(`no TXT answer (rcode ${decodeDnsMessage(response.bytes).rcode})`);
  return decodeAnswer(fromTxtStrings(txt), packet.r, packet.sid, answerMasker);
}

describe("TunnelGateway sessions", () => {
  it("answers a handshake fragment resent after the session opened with the handshake, whatever the session's masks make of it", async () => {
    const x25519 = await selectX25519Provider();
    const obfuscation = obfuscationMasker(gatewayPublicKey, ZONE);
    const sid = 0x0102_0304;
    const handshake = await startClientHandshake(x25519, gatewayPublicKey, ZONE, sid);
    const fragment = (r: Uint8Array): TunnelQuery => ({
      kind: "handshake",
      sid,
      r,
      fragIndex: 0,
      fragCount: 1,
      fragment: handshake.message1,
    });
    const first = await tunnelAnswer(fragment(new Uint8Array([1, 1, 1, 1])), undefined, obfuscation);
    if (first.kind !== "handshake") throw new Error(`no handshake answer: ${first.kind}`);
    const { keys } = await handshake.finish(first.message);
    // A nonce for which the session's query mask turns the resent fragment into a data, poll or close query.
    let misread: Uint8Array | undefined;
    for (let i = 0; i < 65_536 && misread === undefined; i += 1) {
      const r = new Uint8Array([0, 0, i >>> 8, i & 0xff]);
      try {
        const bytes = encodeQuery(fragment(r), obfuscation, undefined);
        if (decodeQuery(bytes, obfuscation, keys.queryMasker).kind !== "handshake") misread = r;
      } catch {
        // not decodable with the session's masks either: not the case we look for
      }
    }
    if (misread === undefined) throw new Error("no nonce makes the session misread a handshake fragment");
    const again = await tunnelAnswer(fragment(misread), undefined, obfuscation);
    expect(again).toEqual(first);
    // The session is intact: a poll gets a session answer, not NXDOMAIN.
    const poll = await tunnelAnswer(
      { kind: "poll", sid, r: new Uint8Array([2, 2, 2, 2]), ack: { next: 0, sack: 0 }, padding: 0 },
      keys.queryMasker,
      keys.answerMasker,
    );
    expect(["data", "empty"]).toContain(poll.kind);
  });
});

describe("TunnelGateway answers only its zone, with proper DNS error codes", () => {
  it("answers the apex SOA and NS, so resolvers accept the delegation", async () => {
    const soa = await ask(query(ZONE, DNS_TYPE_SOA));
    expect(soa.kind).toBe("answer");
    if (soa.kind !== "answer") return;
    const decoded = decodeDnsMessage(soa.bytes);
    expect(decoded.rcode).toBe(RCODE_NOERROR);
    expect(decoded.answers[0]?.type).toBe(DNS_TYPE_SOA);
    // dns-packet agrees on what we encoded (and our owner name is compressed: 2 bytes).
    const parsed = dnsPacket.decode(Buffer.from(soa.bytes));
    expect(parsed.answers?.[0]?.name).toBe(ZONE);
    expect(soa.bytes.length).toBeLessThan(120);
    const ns = await ask(query(ZONE, 2));
    expect(ns.kind === "answer" && decodeDnsMessage(ns.bytes).answers[0]?.type).toBe(2);
  });

  it("answers QNAME-minimisation probes and other types under the zone with NODATA, never NXDOMAIN", async () => {
    const response = await ask(query(`abcdefgh.${ZONE}`, 1));
    if (response.kind !== "answer") throw new Error("no answer");
    const decoded = decodeDnsMessage(response.bytes);
    expect(decoded.rcode).toBe(RCODE_NOERROR);
    expect(decoded.answers).toHaveLength(0);
    expect(decoded.authority[0]?.type).toBe(DNS_TYPE_SOA);
  });

  it("refuses other zones (never an open resolver)", async () => {
    expect(await rcodeOf(query("example.com", DNS_TYPE_TXT))).toBe(RCODE_REFUSED);
    expect(await rcodeOf(query(`x.${ZONE}.evil`, DNS_TYPE_TXT))).toBe(RCODE_REFUSED);
    expect(await rcodeOf(query(`xt.example`, DNS_TYPE_TXT))).toBe(RCODE_REFUSED);
  });

  it("says NOTIMP to ANY and to opcodes other than QUERY", async () => {
    expect(await rcodeOf(query(ZONE, 255))).toBe(RCODE_NOTIMP);
    const notify = query(ZONE, DNS_TYPE_SOA);
    notify[2] = (4 << 3) | 0x01; // opcode NOTIFY
    expect(await rcodeOf(notify)).toBe(RCODE_NOTIMP);
  });

  it("answers bad base32 and unknown sessions with NXDOMAIN", async () => {
    expect(await rcodeOf(query(`not-base32!.${ZONE}`, DNS_TYPE_TXT))).toBe(RCODE_NXDOMAIN);
    expect(await rcodeOf(query(`a1b8.${ZONE}`, DNS_TYPE_TXT))).toBe(RCODE_NXDOMAIN);
    const stranger = encodeTunnelName(new Uint8Array(randomBytes(60)), ZONE);
    expect(await rcodeOf(query(stranger, DNS_TYPE_TXT))).toBe(RCODE_NXDOMAIN);
  });

  it("answers malformed messages with FORMERR: two questions, a compression loop, an oversized label, garbage", async () => {
    const two = query(ZONE, DNS_TYPE_SOA, undefined);
    two[5] = 2;
    expect(await rcodeOf(two)).toBe(RCODE_FORMERR);
    // The question's name is a pointer to itself.
    const loop = new Uint8Array([0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 16, 0, 1]);
    expect(await rcodeOf(loop)).toBe(RCODE_FORMERR);
    const longLabel = new Uint8Array([
      0x42,
      0x42,
      0x01,
      0x00,
      0,
      1,
      0,
      0,
      0,
      0,
      0,
      0,
      64,
      ...new Array<number>(64).fill(97),
      0,
      0,
      16,
      0,
      1,
    ]);
    expect(await rcodeOf(longLabel)).toBe(RCODE_FORMERR);
    const longName = new Uint8Array([
      ...[0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0],
      ...Array.from({ length: 5 }, () => [63, ...new Array<number>(63).fill(97)]).flat(),
      0,
      0,
      16,
      0,
      1,
    ]);
    expect(await rcodeOf(longName)).toBe(RCODE_FORMERR);
    const garbage = new Uint8Array([0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 200, 1, 2]);
    expect(await rcodeOf(garbage)).toBe(RCODE_FORMERR);
  });

  it("never answers responses or scraps shorter than a header", async () => {
    const response = query(ZONE, DNS_TYPE_SOA);
    response[2] = 0x80;
    expect((await ask(response)).kind).toBe("drop");
    expect((await ask(new Uint8Array([1, 2, 3]))).kind).toBe("drop");
  });

  it("keeps responses within 512 bytes without EDNS0 and within the requester's EDNS0 size", async () => {
    const name = encodeTunnelName(new Uint8Array(150), ZONE);
    for (const edns of [undefined, 512, 1232]) {
      const response = await ask(query(name, DNS_TYPE_TXT, edns));
      if (response.kind !== "answer") throw new Error("no answer");
      expect(response.bytes.length).toBeLessThanOrEqual(edns ?? 512);
    }
  });

  it("echoes the question byte for byte, 0x20 case and all", async () => {
    const response = await ask(query("T.eXaMpLe", DNS_TYPE_SOA));
    if (response.kind !== "answer") throw new Error("no answer");
    expect(decodeDnsMessage(response.bytes).questions[0]?.name).toBe("T.eXaMpLe");
  });

  it("survives 100,000 random and mutated packets: every answer is a well-formed response to the same id", async () => {
    const seeds = [
      query(ZONE, DNS_TYPE_SOA),
      query(encodeTunnelName(new Uint8Array(150), ZONE), DNS_TYPE_TXT),
      query(`abc.${ZONE}`, 1, undefined),
    ];
    const packet = fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: 600 }),
      fc
        .tuple(
          fc.constantFrom(...seeds),
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
        )
        .map(([seed, flips]) => {
          const copy = seed.slice();
          for (const [at, value] of flips) copy[at % copy.length] = value;
          return copy;
        }),
      fc
        .uint8Array({ minLength: 0, maxLength: 300 })
        .map((tail) => new Uint8Array([...seeds[0]!.subarray(0, 12), ...tail])),
    );
    const samples = fc.sample(packet, { numRuns: 100_000, seed: 6 });
    let answered = 0;
    for (const bytes of samples) {
      const response = await ask(bytes);
      if (response.kind !== "answer") continue;
      answered += 1;
      let decoded;
      try {
        decoded = decodeDnsMessage(response.bytes);
      } catch (error) {
        throw new Error(
          `bad response ${Buffer.from(response.bytes).toString("hex")} to ${Buffer.from(bytes).toString("hex")}`,
          { cause: error },
        );
      }
      expect(decoded.isResponse).toBe(true);
      expect(decoded.id).toBe(((bytes[0] ?? 0) << 8) | (bytes[1] ?? 0));
      expect(response.bytes.length).toBeLessThanOrEqual(4096);
    }
    expect(answered).toBeGreaterThan(50_000);
    // Still serving after all of it.
    expect(await rcodeOf(query(ZONE, DNS_TYPE_SOA))).toBe(RCODE_NOERROR);
  }, 120_000);
});
