import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  HANDSHAKE_MESSAGE1_BYTES,
  RecordOpener,
  RecordSealer,
  TunnelCryptoError,
  answerClientHandshake,
  maskerFromKey,
  obfuscationMasker,
  startClientHandshake,
} from "./tunnel-cipher.ts";
import { stablelibX25519 } from "../crypto/stablelib-x25519.ts";
import {
  DNS_TYPE_TXT,
  decodeDnsMessage,
  encodeDnsQuery,
  encodeDnsResponse,
  fromTxtStrings,
  toTxtStrings,
} from "./dns-message.ts";
import { decodeInvite, encodeInvite, InviteError } from "../wire/invite.ts";
import {
  MAX_LABEL_CHARS,
  MAX_NAME_CHARS,
  TunnelNameError,
  decodeTunnelName,
  downstreamCapacityBytes,
  encodeTunnelName,
  nameCapacityChars,
  upstreamCapacityBytes,
} from "./tunnel-name.ts";
import {
  QUERY_HEADER_BYTES,
  type TunnelAnswer,
  type TunnelQuery,
  decodeAnswer,
  decodeQuery,
  encodeAnswer,
  encodeQuery,
  peekQuery,
} from "./tunnel-packet.ts";

const ZONE = "t.example";

/** Flips the case of letters at random, as a resolver with 0x20 does. */
function randomCase(name: string, flips: readonly boolean[]): string {
  return Array.from(name, (char, i) => ((flips[i % flips.length] ?? false) ? char.toUpperCase() : char)).join("");
}

describe("tunnel names", () => {
  it("matches the budget arithmetic of the DNS lab notes", () => {
    expect(upstreamCapacityBytes(253, "t.example")).toBe(150);
    expect(upstreamCapacityBytes(253, "t.example.com")).toBe(147);
    expect(nameCapacityChars(72, "t.example")).toBe(62);
    // 1232-byte answer to a max-length name, owner compressed: 934 bytes (dns-lab.md).
    expect(downstreamCapacityBytes(253, 1232)).toBe(934);
  });

  it("round-trips any bytes that fit, whatever 0x20 does to the case (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 48, max: 253 }),
        fc.uint8Array({ minLength: 1, maxLength: 150 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 64 }),
        (budget, bytes, flips) => {
          fc.pre(bytes.length <= upstreamCapacityBytes(budget, ZONE));
          const name = encodeTunnelName(bytes, ZONE, budget);
          expect(name.length).toBeLessThanOrEqual(Math.min(budget, MAX_NAME_CHARS));
          for (const label of name.split(".")) expect(label.length).toBeLessThanOrEqual(MAX_LABEL_CHARS);
          expect(decodeTunnelName(randomCase(name, flips), ZONE)).toEqual(bytes);
        },
      ),
    );
  });

  it("refuses names that do not fit, are not base32 or are not under the zone", () => {
    expect(() => encodeTunnelName(new Uint8Array(151), ZONE)).toThrow(/budget/);
    expect(() => decodeTunnelName(`abc!.${ZONE}`, ZONE)).toThrow(TunnelNameError);
    expect(() => decodeTunnelName("abc.other.example", ZONE)).toThrow(TunnelNameError);
    expect(() => decodeTunnelName(`a.${ZONE}`, ZONE)).toThrow(TunnelNameError);
  });
});

describe("tunnel packets", () => {
  const obfuscation = maskerFromKey(new Uint8Array(32).fill(7));
  const session = maskerFromKey(new Uint8Array(32).fill(9));
  const ack = fc.record({ next: fc.integer({ min: 0, max: 0xffffff }), sack: fc.integer({ min: 0, max: 0xffff }) });
  const r = fc.uint8Array({ minLength: 4, maxLength: 4 });
  const sid = fc.integer({ min: 0, max: 0xffffffff });
  const query: fc.Arbitrary<TunnelQuery> = fc.oneof(
    fc.record({
      kind: fc.constant("data" as const),
      sid,
      r,
      seq: fc.integer({ min: 0, max: 0xffffff }),
      ack,
      chunk: fc.uint8Array({ minLength: 1, maxLength: 130 }),
    }),
    fc.record({ kind: fc.constant("poll" as const), sid, r, ack, padding: fc.integer({ min: 0, max: 100 }) }),
    fc.record({ kind: fc.constant("close" as const), sid, r, ack }),
    fc.integer({ min: 1, max: 15 }).chain((fragCount) =>
      fc.record({
        kind: fc.constant("handshake" as const),
        sid,
        r,
        fragIndex: fc.integer({ min: 0, max: fragCount - 1 }),
        fragCount: fc.constant(fragCount),
        fragment: fc.uint8Array({ minLength: 1, maxLength: 40 }),
      }),
    ),
  );

  it("round-trips every query through a name with random case (property)", () => {
    fc.assert(
      fc.property(query, fc.array(fc.boolean(), { minLength: 1, maxLength: 64 }), (packet, flips) => {
        const bytes = encodeQuery(packet, obfuscation, session);
        const name = encodeTunnelName(bytes, ZONE);
        // A handshake is read before there is a session (the gateway checks resent fragments first).
        const masker = packet.kind === "handshake" ? undefined : session;
        const decoded = decodeQuery(decodeTunnelName(randomCase(name, flips), ZONE), obfuscation, masker);
        expect(decoded).toEqual(packet.kind === "poll" ? { ...packet } : packet);
        expect(peekQuery(bytes, obfuscation).sid).toBe(packet.sid >>> 0);
      }),
    );
  });

  it("round-trips every answer (property)", () => {
    const answer: fc.Arbitrary<TunnelAnswer> = fc.oneof(
      fc.record({
        kind: fc.constant("data" as const),
        seq: fc.integer({ min: 0, max: 0xffffff }),
        ack,
        chunk: fc.uint8Array({ minLength: 1, maxLength: 900 }),
      }),
      fc.record({ kind: fc.constant("empty" as const), ack }),
      fc.record({ kind: fc.constant("handshake" as const), message: fc.uint8Array({ maxLength: 60 }) }),
      fc.constant({ kind: "pending" as const }),
    );
    fc.assert(
      fc.property(answer, r, sid, (packet, nonce, id) => {
        const bytes = encodeAnswer(packet, nonce, id, session);
        const viaTxt = fromTxtStrings(toTxtStrings(bytes));
        expect(decodeAnswer(viaTxt, nonce, id, session)).toEqual(packet);
      }),
    );
  });

  it("hides the header: the same sequence numbers in two queries share no bytes beyond chance", () => {
    const a = encodeQuery(
      { kind: "poll", sid: 1, r: new Uint8Array([1, 2, 3, 4]), ack: { next: 5, sack: 0 }, padding: 0 },
      obfuscation,
      session,
    );
    const b = encodeQuery(
      { kind: "poll", sid: 1, r: new Uint8Array([1, 2, 3, 5]), ack: { next: 5, sack: 0 }, padding: 0 },
      obfuscation,
      session,
    );
    expect(a.length).toBe(QUERY_HEADER_BYTES);
    let same = 0;
    for (let i = 0; i < a.length; i += 1) if (a[i] === b[i] && i !== 4 && i !== 5 && i !== 6) same += 1;
    expect(same).toBeLessThan(4);
  });
});

describe("DNS messages", () => {
  it("round-trips queries and TXT responses; owner names are compressed", () => {
    const name = encodeTunnelName(new Uint8Array(150).fill(1), ZONE);
    const query = encodeDnsQuery({ id: 7, name, type: DNS_TYPE_TXT, ednsUdpBytes: 1232 });
    const parsed = decodeDnsMessage(query);
    expect(parsed.questions[0]?.name).toBe(name);
    expect(parsed.ednsUdpBytes).toBe(1232);
    const payload = new Uint8Array(900).fill(3);
    const response = encodeDnsResponse({
      id: 7,
      questionRaw: parsed.questions[0]?.raw ?? new Uint8Array(0),
      rcode: 0,
      isAuthoritative: true,
      recursionDesired: true,
      answers: [{ name, ttl: 0, data: { type: "TXT", strings: toTxtStrings(payload) } }],
      ednsUdpBytes: 1232,
    });
    expect(response.length).toBeLessThanOrEqual(1232);
    const decoded = decodeDnsMessage(response);
    expect(decoded.answers[0]?.name).toBe(name);
    expect(fromTxtStrings(decoded.answers[0]?.txt ?? [])).toEqual(payload);
    // 12 header + question + 2-byte owner pointer: the name is written once.
    expect(response.length).toBe(12 + (name.length + 2 + 4) + (2 + 10) + 900 + 4 + 11);
  });

  it("refuses labels over 63 and names over 255 octets", () => {
    expect(() => encodeDnsQuery({ id: 1, name: `${"a".repeat(64)}.x`, type: 1 })).toThrow(/label/);
    expect(() =>
      encodeDnsQuery({ id: 1, name: Array.from({ length: 5 }, () => "a".repeat(60)).join("."), type: 1 }),
    ).toThrow(/name/);
  });

  it("never throws anything but DnsMessageError on random input, and never hangs on pointer loops (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          decodeDnsMessage(bytes);
        } catch (error) {
          expect((error as Error).name).toBe("DnsMessageError");
        }
      }),
      { numRuns: 5_000 },
    );
  });
});

describe("tunnel crypto", () => {
  it("completes a Noise NK handshake and seals records both ways; a wrong key fails", async () => {
    const server = await stablelibX25519.generateKeyPair();
    const client = await startClientHandshake(stablelibX25519, server.publicKey, ZONE, 42);
    expect(client.message1.length).toBe(HANDSHAKE_MESSAGE1_BYTES);
    const answered = await answerClientHandshake(
      stablelibX25519,
      server.privateKey,
      server.publicKey,
      ZONE,
      42,
      client.message1,
    );
    const { keys, holdMs } = await client.finish(answered.message2);
    expect(holdMs).toBe(0);
    const up = new RecordSealer(keys.upstream);
    const opener = new RecordOpener(answered.keys.upstream, 1 << 20);
    const frames = [new Uint8Array([1, 2, 3]), new Uint8Array(5000).fill(9)];
    const stream = frames.map((frame) => up.seal(frame));
    const joined = fromTxtStrings(stream);
    const got: Uint8Array[] = [];
    for (let at = 0; at < joined.length; at += 137) got.push(...opener.push(joined.subarray(at, at + 137)));
    expect(got).toEqual(frames);
    // The other direction's keys do not open it, and a flipped bit ends it.
    const tampered = up.seal(new Uint8Array([4]));
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    expect(() => opener.push(tampered)).toThrow(TunnelCryptoError);
    // A handshake for another sid, zone or key is refused.
    await expect(
      answerClientHandshake(stablelibX25519, server.privateKey, server.publicKey, ZONE, 43, client.message1),
    ).rejects.toThrow(TunnelCryptoError);
    const other = await stablelibX25519.generateKeyPair();
    await expect(
      answerClientHandshake(stablelibX25519, other.privateKey, other.publicKey, ZONE, 42, client.message1),
    ).rejects.toThrow(TunnelCryptoError);
    expect(obfuscationMasker(server.publicKey, ZONE)(1, new Uint8Array(4), 0, 4)).toHaveLength(4);
  });
});

describe("invites", () => {
  it("round-trips and refuses damaged ones with a clear message", () => {
    const invite = {
      serverUrl: "https://chat.example.net",
      zone: "t.example.net",
      publicKey: new Uint8Array(32).fill(5),
    };
    expect(decodeInvite(encodeInvite(invite))).toEqual(invite);
    expect(() => decodeInvite("rmsg1.!!!")).toThrow(InviteError);
    expect(() => decodeInvite("hello")).toThrow(/starts with/);
  });
});
