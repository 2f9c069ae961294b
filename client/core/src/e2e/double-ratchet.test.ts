import { hex } from "@scure/base";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { randomBytes, stablelibX25519, webCryptoX25519, type X25519Provider } from "@remessenger/protocol";
import {
  MAX_SKIP_PER_CHAIN,
  RatchetError,
  type RatchetState,
  SKIPPED_KEY_LIFETIME_MS,
  canSend,
  initReceiver,
  initSender,
  ratchetDecrypt,
  ratchetEncrypt,
} from "./double-ratchet.ts";

const AD = new TextEncoder().encode("routing header");
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const read = (b: Uint8Array): string => new TextDecoder().decode(b);

async function pair(x25519: X25519Provider = webCryptoX25519): Promise<{ alice: RatchetState; bob: RatchetState }> {
  const shared = randomBytes(32);
  const hka = randomBytes(32);
  const nhkb = randomBytes(32);
  const bobKey = await x25519.generateKeyPair();
  return {
    alice: await initSender(x25519, shared, bobKey.publicKey, hka, nhkb),
    bob: initReceiver(shared, bobKey, hka, nhkb),
  };
}

async function rejects(state: RatchetState, message: Uint8Array, ad = AD, nowMs = 0): Promise<string> {
  try {
    await ratchetDecrypt(state, message, ad, { x25519: webCryptoX25519, nowMs });
  } catch (error) {
    if (error instanceof RatchetError) return error.reason;
    throw error;
  }
  throw new Error("decrypted, but should not have");
}

type Side = "alice" | "bob";
interface InFlight {
  id: number;
  from: Side;
  message: Uint8Array;
  plaintext: string;
}

const STEP = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("send" as const), from: fc.constantFrom<Side>("alice", "bob") }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("deliver" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("lose" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("replay" as const), pick: fc.nat() }) },
);

describe("Double Ratchet with header encryption", () => {
  it("decrypts every delivered message exactly once under any interleaving, loss and reordering; replays fail", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(STEP, { minLength: 1, maxLength: 80 }), async (steps) => {
        const states = await pair();
        const inFlight: InFlight[] = [];
        const delivered: InFlight[] = [];
        let next = 0;
        for (const step of steps) {
          if (step.kind === "send") {
            if (!canSend(states[step.from])) continue;
            const plaintext = `${step.from} #${next}`;
            const sealed = ratchetEncrypt(states[step.from], text(plaintext), AD);
            states[step.from] = sealed.state;
            inFlight.push({ id: next, from: step.from, message: sealed.message, plaintext });
            next += 1;
          } else if (step.kind === "deliver" || step.kind === "lose") {
            if (inFlight.length === 0) continue;
            const [item] = inFlight.splice(step.pick % inFlight.length, 1);
            if (item === undefined || step.kind === "lose") continue;
            const to: Side = item.from === "alice" ? "bob" : "alice";
            const opened = await ratchetDecrypt(states[to], item.message, AD, { x25519: webCryptoX25519, nowMs: 0 });
            expect(read(opened.plaintext)).toBe(item.plaintext);
            states[to] = opened.state;
            delivered.push(item);
          } else {
            const item = delivered[step.pick % Math.max(1, delivered.length)];
            if (item === undefined) continue;
            const to: Side = item.from === "alice" ? "bob" : "alice";
            expect(["replay", "unknown-header"]).toContain(await rejects(states[to], item.message));
          }
        }
        // Whatever is still in flight decrypts now, each once, in any order.
        for (const item of inFlight.reverse()) {
          const to: Side = item.from === "alice" ? "bob" : "alice";
          const opened = await ratchetDecrypt(states[to], item.message, AD, { x25519: webCryptoX25519, nowMs: 0 });
          expect(read(opened.plaintext)).toBe(item.plaintext);
          states[to] = opened.state;
          expect(["replay", "unknown-header"]).toContain(await rejects(states[to], item.message));
        }
      }),
      { numRuns: 60 },
    );
  });

  it("refuses any tampered header, body or associated data and keeps the state usable", async () => {
    const { alice, bob } = await pair();
    const { message } = ratchetEncrypt(alice, text("hello"), AD);
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.integer({ min: 0, max: 7 }), fc.boolean(), async (at, bit, isAd) => {
        const target = isAd ? AD.slice() : message.slice();
        const index = at % target.length;
        target[index] = (target[index] ?? 0) ^ (1 << bit);
        const reason = isAd ? await rejects(bob, message, target) : await rejects(bob, target);
        expect(["unknown-header", "bad-body"]).toContain(reason);
      }),
      { numRuns: 200 },
    );
    const opened = await ratchetDecrypt(bob, message, AD, { x25519: webCryptoX25519, nowMs: 0 });
    expect(read(opened.plaintext)).toBe("hello");
  });

  it("forgets a message key once used: a snapshot taken after decryption cannot decrypt the message again", async () => {
    let { alice, bob } = await pair();
    const first = ratchetEncrypt(alice, text("one"), AD);
    alice = first.state;
    const second = ratchetEncrypt(alice, text("two"), AD);
    // "two" first: the key of "one" is kept as a skipped key.
    const afterTwo = await ratchetDecrypt(bob, second.message, AD, { x25519: webCryptoX25519, nowMs: 0 });
    bob = afterTwo.state;
    expect(bob.skipped).toHaveLength(1);
    const afterOne = await ratchetDecrypt(bob, first.message, AD, { x25519: webCryptoX25519, nowMs: 0 });
    expect(read(afterOne.plaintext)).toBe("one");
    const snapshot = JSON.parse(
      JSON.stringify(afterOne.state, (_k, v: unknown) => (v instanceof Uint8Array ? { b: hex.encode(v) } : v)),
      (_k, v: unknown) =>
        typeof v === "object" && v !== null && "b" in v && typeof v.b === "string" ? hex.decode(v.b) : v,
    ) as RatchetState;
    expect(snapshot.skipped).toHaveLength(0);
    // No stored key, chain key or counter in the snapshot opens either message.
    expect(["replay", "unknown-header"]).toContain(await rejects(snapshot, first.message));
    expect(["replay", "unknown-header"]).toContain(await rejects(snapshot, second.message));
    const everyKey = JSON.stringify(snapshot, (_k, v: unknown) => (v instanceof Uint8Array ? hex.encode(v) : v));
    expect(everyKey).not.toContain(hex.encode(bob.skipped[0]?.messageKey ?? new Uint8Array(1)));
  });

  it("refuses the messages of another session (no header key opens them)", async () => {
    let { alice } = await pair();
    const { bob } = { bob: (await pair()).bob };
    let last: Uint8Array | undefined;
    for (let i = 0; i <= MAX_SKIP_PER_CHAIN + 1; i += 1) {
      const sealed = ratchetEncrypt(alice, text(`m${i}`), AD);
      alice = sealed.state;
      last = sealed.message;
    }
    expect(last).toBeDefined();
    // Another session's bob: its header keys do not open alice's messages.
    expect(await rejects(bob, last!)).toBe("unknown-header");
  });

  it("accepts a gap of exactly the window but not one more, and drops skipped keys after their lifetime", async () => {
    const states = await pair();
    let alice = states.alice;
    const messages: Uint8Array[] = [];
    for (let i = 0; i <= MAX_SKIP_PER_CHAIN + 1; i += 1) {
      const sealed = ratchetEncrypt(alice, text(`m${i}`), AD);
      alice = sealed.state;
      messages.push(sealed.message);
    }
    expect(await rejects(states.bob, messages[MAX_SKIP_PER_CHAIN + 1]!)).toBe("too-far-ahead");
    const opened = await ratchetDecrypt(states.bob, messages[MAX_SKIP_PER_CHAIN]!, AD, {
      x25519: webCryptoX25519,
      nowMs: 0,
    });
    expect(opened.state.skipped).toHaveLength(MAX_SKIP_PER_CHAIN);
    const early = await ratchetDecrypt(opened.state, messages[5]!, AD, { x25519: webCryptoX25519, nowMs: 1000 });
    expect(read(early.plaintext)).toBe("m5");
    expect(await rejects(early.state, messages[6]!, AD, SKIPPED_KEY_LIFETIME_MS + 1)).toBe("replay");
  });

  it("works the same with the portable X25519 provider, and the two providers interoperate", async () => {
    const states = await pair(stablelibX25519);
    const first = ratchetEncrypt(states.alice, text("hi"), AD);
    const atBob = await ratchetDecrypt(states.bob, first.message, AD, { x25519: stablelibX25519, nowMs: 0 });
    const reply = ratchetEncrypt(atBob.state, text("hello"), AD);
    const atAlice = await ratchetDecrypt(first.state, reply.message, AD, { x25519: webCryptoX25519, nowMs: 0 });
    expect(read(atAlice.plaintext)).toBe("hello");
  });

  it("cannot send from the answering side before a message arrived", async () => {
    const { bob } = await pair();
    expect(canSend(bob)).toBe(false);
    expect(() => ratchetEncrypt(bob, text("x"), AD)).toThrow(/cannot send/);
  });
});
