import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ANSWER_HEADER_BYTES, type TunnelAnswer, StreamReceiver, StreamSender } from "@remessenger/protocol";
import {
  DEFAULT_TUNNEL_SESSION_CONFIG,
  type OutgoingQuery,
  type TunnelEvent,
  TunnelSession,
} from "./tunnel-session.ts";

interface Network {
  queryLoss: number;
  answerLoss: number;
  duplication: number;
  maxDelayMs: number;
}

/**
 * A simulated tunnel: the client's TunnelSession against a gateway built
 * like GatewaySession (a StreamSender and StreamReceiver, answers cut to the
 * room, identical queries answered identically from a cache), over a
 * network that loses, duplicates and reorders. Time is simulated.
 */
function simulate(
  upstream: Uint8Array[],
  downstream: Uint8Array[],
  network: Network,
  random: () => number,
  limitMs = 600_000,
): { up: Uint8Array; down: Uint8Array; nowMs: number; queries: number } {
  const client = new TunnelSession({ ...DEFAULT_TUNNEL_SESSION_CONFIG, maxChunkBytes: 40, maxInFlight: 8 });
  const gatewaySender = new StreamSender(256);
  const gatewayReceiver = new StreamReceiver(256);
  const answered = new Map<number, TunnelAnswer>();
  const upParts: Uint8Array[] = [];
  const downParts: Uint8Array[] = [];
  type Scheduled = { atMs: number; run: () => void };
  const queue: Scheduled[] = [];
  let nowMs = 0;
  let queries = 0;
  const at = (delayMs: number, run: () => void): void => {
    queue.push({ atMs: nowMs + delayMs, run });
  };
  const delay = (): number => 1 + random() * network.maxDelayMs;

  const gatewayAnswer = (queryId: number, query: OutgoingQuery): TunnelAnswer => {
    const cached = answered.get(queryId);
    if (cached !== undefined) return cached;
    gatewaySender.onAck(query.ack, nowMs, 50);
    if (query.kind === "data") gatewayReceiver.receive(query.seq, query.chunk, (bytes) => upParts.push(bytes));
    const chunk = gatewaySender.nextChunk(60 - ANSWER_HEADER_BYTES, nowMs, 500);
    const ack = gatewayReceiver.ackInfo();
    const answer: TunnelAnswer =
      chunk === undefined ? { kind: "empty", ack } : { kind: "data", seq: chunk.seq, ack, chunk: chunk.bytes };
    answered.set(queryId, answer);
    return answer;
  };

  let lastWake = Infinity;
  const step = (event: TunnelEvent): void => {
    for (const effect of client.step(event, nowMs)) {
      if (effect.type === "deliver") downParts.push(effect.bytes);
      if (effect.type !== "query") continue;
      queries += 1;
      const { queryId, query } = effect;
      at(effect.timeoutMs, () => {
        step({ type: "failed", queryId, failure: "timeout" });
      });
      const copies = random() < network.duplication ? 2 : 1;
      for (let copy = 0; copy < copies; copy += 1) {
        if (random() < network.queryLoss) continue;
        at(delay(), () => {
          const answer = gatewayAnswer(queryId, query);
          if (random() < network.answerLoss) return;
          at(delay(), () => {
            step({ type: "answer", queryId, answer });
          });
        });
      }
    }
    const wake = client.nextWakeMs(nowMs);
    if (wake !== undefined && wake !== lastWake) {
      lastWake = wake;
      at(Math.max(0, wake - nowMs), () => {
        lastWake = Infinity;
        step({ type: "tick" });
      });
    }
  };

  for (const bytes of downstream) gatewaySender.write(bytes);
  step({ type: "tick" });
  for (const bytes of upstream) step({ type: "write", bytes });
  const wantUp = upstream.reduce((sum, bytes) => sum + bytes.length, 0);
  const wantDown = downstream.reduce((sum, bytes) => sum + bytes.length, 0);
  const total = (parts: Uint8Array[]): number => parts.reduce((sum, bytes) => sum + bytes.length, 0);
  for (let events = 0; queue.length > 0 && nowMs < limitMs; events += 1) {
    if (events > 1_000_000) throw new Error("the simulation does not converge");
    if (total(upParts) >= wantUp && total(downParts) >= wantDown) break;
    queue.sort((a, b) => a.atMs - b.atMs);
    const next = queue.shift();
    if (next === undefined) break;
    nowMs = next.atMs;
    next.run();
  }
  return { up: concat(upParts), down: concat(downParts), nowMs, queries };
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function seeded(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

const payloads = fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { minLength: 0, maxLength: 12 });

describe("TunnelSession over a simulated network", () => {
  it("delivers both streams whole, in order and once on a clean network", () => {
    const up = [new Uint8Array(1000).fill(1), new Uint8Array(5).fill(2)];
    const down = [new Uint8Array(2000).fill(3)];
    const result = simulate(up, down, { queryLoss: 0, answerLoss: 0, duplication: 0, maxDelayMs: 5 }, seeded(1));
    expect(result.up).toEqual(concat(up));
    expect(result.down).toEqual(concat(down));
  });

  it("delivers both streams whole, in order and once under loss, duplication and reordering (property)", () => {
    fc.assert(
      fc.property(
        payloads,
        payloads,
        fc.record({
          queryLoss: fc.double({ min: 0, max: 0.35, noNaN: true }),
          answerLoss: fc.double({ min: 0, max: 0.35, noNaN: true }),
          duplication: fc.double({ min: 0, max: 0.3, noNaN: true }),
          maxDelayMs: fc.integer({ min: 1, max: 300 }),
        }),
        fc.integer(),
        (up, down, network, seed) => {
          const result = simulate(up, down, network, seeded(seed));
          expect(result.up).toEqual(concat(up));
          expect(result.down).toEqual(concat(down));
        },
      ),
      { numRuns: 60 },
    );
  });

  it("keeps at most maxInFlight data queries outstanding and grows the window while data flows", () => {
    const session = new TunnelSession({
      ...DEFAULT_TUNNEL_SESSION_CONFIG,
      maxChunkBytes: 40,
      maxInFlight: 6,
      initialInFlight: 2,
    });
    const first = session.step({ type: "write", bytes: new Uint8Array(4000) }, 0);
    const sent = first.filter((effect) => effect.type === "query");
    expect(sent.filter((effect) => effect.query.kind === "data").length).toBe(2);
    let nowMs = 1;
    let outstanding = sent
      .map((effect) => (effect.type === "query" ? effect : undefined))
      .filter((e) => e !== undefined);
    let maxSeen = outstanding.length;
    for (let round = 0; round < 30 && outstanding.length > 0; round += 1) {
      const next = [];
      for (const query of outstanding) {
        const acked = query.query.kind === "data" ? query.query.seq + 1 : 0;
        const effects = session.step(
          { type: "answer", queryId: query.queryId, answer: { kind: "empty", ack: { next: acked, sack: 0 } } },
          nowMs,
        );
        for (const effect of effects) if (effect.type === "query") next.push(effect);
      }
      nowMs += 1;
      outstanding = next;
      maxSeen = Math.max(maxSeen, session.dataInFlightCount);
      expect(session.dataInFlightCount).toBeLessThanOrEqual(6);
      expect(session.inFlightCount).toBeLessThanOrEqual(12);
    }
    expect(maxSeen).toBe(6);
  });

  it("ends the session asking for shorter names when long queries keep failing while short ones pass", () => {
    const session = new TunnelSession({
      ...DEFAULT_TUNNEL_SESSION_CONFIG,
      maxChunkBytes: 40,
      maxInFlight: 4,
      longNameFailures: 3,
    });
    let effects = session.step({ type: "write", bytes: new Uint8Array(400) }, 0);
    let ended = false;
    for (let round = 0; round < 20 && !ended; round += 1) {
      const next = [];
      for (const effect of effects) {
        if (effect.type === "end") {
          expect(effect.end.isNameBudgetTooLong).toBe(true);
          ended = true;
        }
        if (effect.type !== "query") continue;
        const isLong = effect.query.kind === "data" || (effect.query.kind === "poll" && effect.query.padding > 0);
        next.push(
          ...session.step(
            isLong
              ? { type: "failed", queryId: effect.queryId, failure: "servfail" }
              : { type: "answer", queryId: effect.queryId, answer: { kind: "empty", ack: { next: 0, sack: 0 } } },
            round * 100_000,
          ),
        );
      }
      next.push(...session.step({ type: "tick" }, (round + 1) * 100_000));
      effects = next;
    }
    expect(ended).toBe(true);
  });

  it("honours a rate limit (HTTP 429): nothing goes out until Retry-After has passed, then one query at a time", () => {
    const session = new TunnelSession({ ...DEFAULT_TUNNEL_SESSION_CONFIG, maxChunkBytes: 40, initialInFlight: 4 });
    const bytes = Uint8Array.from({ length: 400 }, (_, i) => i % 251);
    const first = session.step({ type: "write", bytes }, 0);
    const data = first.flatMap((effect) =>
      effect.type === "query" && effect.query.kind === "data"
        ? [{ queryId: effect.queryId, seq: effect.query.seq, chunk: effect.query.chunk }]
        : [],
    );
    expect(data.map((query) => query.seq)).toEqual([0, 1, 2, 3]);
    for (const query of data) {
      const effects = session.step(
        { type: "failed", queryId: query.queryId, failure: "rate-limited", retryAfterMs: 3_000 },
        10,
      );
      expect(effects.filter((effect) => effect.type === "query")).toEqual([]);
    }
    expect(session.step({ type: "tick" }, 2_000).filter((effect) => effect.type === "query")).toEqual([]);
    expect(session.nextWakeMs(2_000)).toBe(3_010);
    const resumed = session.step({ type: "tick" }, 3_010);
    const resent = resumed.flatMap((effect) =>
      effect.type === "query" && effect.query.kind === "data" ? [effect.query] : [],
    );
    // The window halved on every 429: one data query, the first lost chunk, byte for byte.
    expect(resent.map((query) => query.seq)).toEqual([0]);
    expect(resent[0]?.chunk).toEqual(data[0]?.chunk);
    expect(session.dataInFlightCount).toBe(1);
  });

  it("slows its polls down while active when they come back empty, and speeds up again on data", () => {
    const session = new TunnelSession({ ...DEFAULT_TUNNEL_SESSION_CONFIG, maxChunkBytes: 40 });
    type Sent = { queryId: number; query: OutgoingQuery };
    let outstanding: Sent[] = [];
    const take = (effects: ReturnType<TunnelSession["step"]>): void => {
      for (const effect of effects) if (effect.type === "query") outstanding.push(effect);
    };
    take(session.step({ type: "write", bytes: new Uint8Array(30) }, 0));
    // A gateway behind a resolver: every query answered at once, never held; nothing comes down.
    let polls = 0;
    for (let nowMs = 0; nowMs < 900; nowMs += 1) {
      for (let round = 0; round < 100 && outstanding.length > 0; round += 1) {
        const answering = outstanding;
        outstanding = [];
        for (const { queryId, query } of answering) {
          if (query.kind === "poll") polls += 1;
          const next = query.kind === "data" ? query.seq + 1 : 1;
          take(session.step({ type: "answer", queryId, answer: { kind: "empty", ack: { next, sack: 0 } } }, nowMs));
        }
      }
      const wake = session.nextWakeMs(nowMs);
      if (wake !== undefined && wake <= nowMs + 1) take(session.step({ type: "tick" }, nowMs + 1));
    }
    // Unpaced, every answer would send the next poll at once: thousands in these 900 ms.
    expect(polls).toBeGreaterThan(20);
    expect(polls).toBeLessThan(120);
    // Data coming down closes the gap: the next poll goes out with the answer.
    let pending = outstanding.find((sent) => sent.query.kind === "poll");
    for (let nowMs = 900; pending === undefined && nowMs < 1_000; nowMs += 1) {
      take(session.step({ type: "tick" }, nowMs));
      pending = outstanding.find((sent) => sent.query.kind === "poll");
    }
    if (pending === undefined) throw new Error("expected a poll");
    const effects = session.step(
      {
        type: "answer",
        queryId: pending.queryId,
        answer: { kind: "data", seq: 0, ack: { next: 1, sack: 0 }, chunk: new Uint8Array(10) },
      },
      1_000,
    );
    expect(effects.some((effect) => effect.type === "query" && effect.query.kind === "poll")).toBe(true);
  });

  it("ends the session when the gateway no longer knows it (NXDOMAIN)", () => {
    const session = new TunnelSession({ ...DEFAULT_TUNNEL_SESSION_CONFIG, maxChunkBytes: 40 });
    const [query] = session.step({ type: "tick" }, 0);
    if (query?.type !== "query") throw new Error("expected a poll");
    const effects = session.step({ type: "failed", queryId: query.queryId, failure: "lost-session" }, 5);
    expect(effects).toContainEqual({ type: "end", end: expect.objectContaining({ isSessionLost: true }) as unknown });
    expect(session.isOpen).toBe(false);
  });
});
