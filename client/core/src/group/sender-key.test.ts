import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { DeviceSigner, Ed25519Provider } from "../crypto/device-signer.ts";
import { hmacSha256, randomBytes } from "@remessenger/protocol";
import { nobleEd25519 } from "../crypto/noble-ed25519.ts";
import { webCryptoEd25519 } from "../crypto/webcrypto-ed25519.ts";
import {
  type GroupEnvelopeFields,
  MAX_SKIPPED_KEYS,
  MAX_SKIP_PER_CHAIN,
  type OwnSenderKey,
  type ReceivedSenderKey,
  SenderKeyError,
  type SenderKeyFailure,
  createOwnSenderKey,
  distributionOf,
  groupRoute,
  openGroupMessage,
  receiveDistribution,
  sealGroupMessage,
} from "./sender-key.ts";

const CHAT = "c" + "a".repeat(26);
const SENDER = "d" + "b".repeat(26);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const read = (b: Uint8Array): string => new TextDecoder().decode(b);

interface Sent {
  n: number;
  messageId: Uint8Array;
  envelope: GroupEnvelopeFields;
  plaintext: string;
}

async function sender(ed25519: Ed25519Provider = webCryptoEd25519, epoch = 1) {
  const made = await createOwnSenderKey(ed25519, CHAT, epoch);
  return { own: made.key, signer: made.signer };
}

/** Seals `count` messages in order. */
async function sealMany(
  own: OwnSenderKey,
  signer: DeviceSigner,
  count: number,
  from = 0,
): Promise<{ own: OwnSenderKey; sent: Sent[] }> {
  const sent: Sent[] = [];
  let key = own;
  for (let n = from; n < from + count; n += 1) {
    const messageId = randomBytes(16);
    const plaintext = `message ${n}`;
    const sealed = await sealGroupMessage(key, signer, text(plaintext), groupRoute(CHAT, messageId, SENDER));
    key = sealed.key;
    sent.push({ n, messageId, envelope: sealed.envelope, plaintext });
  }
  return { own: key, sent };
}

async function open(key: ReceivedSenderKey, message: Sent, ed25519: Ed25519Provider = webCryptoEd25519) {
  return openGroupMessage(key, message.envelope, groupRoute(CHAT, message.messageId, SENDER), ed25519);
}

async function failure(promise: Promise<unknown>): Promise<SenderKeyFailure> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof SenderKeyError) return error.reason;
    throw error;
  }
  throw new Error("opened, but should not have");
}

const STEP = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("send" as const), count: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("deliver" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("lose" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("replay" as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("tamper" as const),
      pick: fc.nat(),
      part: fc.constantFrom("ciphertext", "signature", "iteration", "route"),
      at: fc.nat(),
    }),
  },
);

describe("Sender Keys", () => {
  it("opens every delivered message exactly once under any reordering and loss; replays and tampering fail and change nothing", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(STEP, { minLength: 1, maxLength: 60 }), async (steps) => {
        const made = await sender();
        const signer = made.signer;
        let own = made.own;
        let receiver = receiveDistribution(SENDER, distributionOf(own));
        const inFlight: Sent[] = [];
        const opened: Sent[] = [];
        const lost = new Set<number>();
        let next = 0;
        for (const step of steps) {
          if (step.kind === "send") {
            const sealed = await sealMany(own, signer, step.count, next);
            own = sealed.own;
            next += step.count;
            inFlight.push(...sealed.sent);
            continue;
          }
          if (step.kind === "replay") {
            const old = opened[step.pick % Math.max(1, opened.length)];
            if (old === undefined) continue;
            expect(await failure(open(receiver, old))).toBe("replay");
            continue;
          }
          const index = step.pick % Math.max(1, inFlight.length);
          const message = inFlight[index];
          if (message === undefined) continue;
          if (step.kind === "lose") {
            inFlight.splice(index, 1);
            lost.add(message.n);
            continue;
          }
          if (step.kind === "tamper") {
            const before = receiver;
            const forged = tamper(message, step.part, step.at);
            const reason = await failure(open(receiver, forged));
            expect(["bad-signature"]).toContain(reason);
            expect(receiver).toBe(before);
            continue;
          }
          inFlight.splice(index, 1);
          const result = await open(receiver, message);
          expect(read(result.plaintext)).toBe(message.plaintext);
          receiver = result.key;
          opened.push(message);
        }
        // Whatever was never delivered still opens, once, in any order.
        for (const message of inFlight.reverse()) {
          const result = await open(receiver, message);
          expect(read(result.plaintext)).toBe(message.plaintext);
          receiver = result.key;
          opened.push(message);
        }
        expect(new Set(opened.map((m) => m.n)).size).toBe(opened.length);
        for (const message of opened) expect(await failure(open(receiver, message))).toBe("replay");
        // Once everything arrived, the only keys kept are those of lost messages.
        for (const skipped of receiver.skipped) expect(lost.has(skipped.iteration)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it("forward secrecy: a state taken after a message opened cannot open it again, nor can any later state", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 30 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 30 }),
        async (count, picks) => {
          const { own, signer } = await sender();
          let receiver = receiveDistribution(SENDER, distributionOf(own));
          const { sent } = await sealMany(own, signer, count);
          const pending = [...sent];
          const used: Sent[] = [];
          for (const pick of picks) {
            const message = pending.splice(pick % pending.length, 1)[0];
            if (message === undefined) break;
            receiver = (await open(receiver, message)).key;
            used.push(message);
            // Every used message is beyond the reach of this snapshot.
            for (const old of used) expect(await failure(open(receiver, old))).toBe("replay");
            if (pending.length === 0) break;
          }
          // The state holds no key of a used message (skipped or chain).
          for (const old of used) expect(receiver.skipped.some((s) => s.iteration === old.n)).toBe(false);
          expect(receiver.iteration).toBeGreaterThan(Math.max(...used.map((m) => m.n)));
        },
      ),
      { numRuns: 40 },
    );
  });

  it("a member holding the chain cannot sign as its sender; a key of another epoch or sender is refused", async () => {
    const { own, signer } = await sender();
    const receiver = receiveDistribution(SENDER, distributionOf(own));
    // The attacker knows the chain (it is a member) and makes its own signing key.
    const attacker = await sender();
    const forgedKey: OwnSenderKey = {
      ...own,
      signingKey: attacker.own.signingKey,
      signingSeed: attacker.own.signingSeed,
    };
    const forged = await sealMany(forgedKey, attacker.signer, 1);
    const message = forged.sent[0];
    if (message === undefined) throw new Error("nothing sealed");
    expect(await failure(open(receiver, message))).toBe("bad-signature");

    const genuine = await sealMany(own, signer, 1);
    const first = genuine.sent[0];
    if (first === undefined) throw new Error("nothing sealed");
    expect(await failure(open({ ...receiver, epoch: 2 }, first))).toBe("wrong-key");
    // Moved to another message id or sending device: the signature no longer covers it.
    expect(
      await failure(
        openGroupMessage(receiver, first.envelope, groupRoute(CHAT, randomBytes(16), SENDER), webCryptoEd25519),
      ),
    ).toBe("bad-signature");
    expect(
      await failure(
        openGroupMessage(
          receiver,
          first.envelope,
          groupRoute(CHAT, first.messageId, "d" + "c".repeat(26)),
          webCryptoEd25519,
        ),
      ),
    ).toBe("bad-signature");
    expect(read((await open(receiver, first)).plaintext)).toBe("message 0");
  });

  it("a distribution taken mid-chain opens what follows, not what came before", async () => {
    const { own, signer } = await sender();
    const early = await sealMany(own, signer, 3);
    const late = await sealMany(early.own, signer, 2, 3);
    let receiver = receiveDistribution(SENDER, distributionOf(early.own));
    for (const message of early.sent) expect(await failure(open(receiver, message))).toBe("replay");
    for (const message of late.sent) {
      const result = await open(receiver, message);
      expect(read(result.plaintext)).toBe(message.plaintext);
      receiver = result.key;
    }
  });

  it("bounds the gap and the skipped keys", async () => {
    const { own, signer } = await sender();
    const receiver = receiveDistribution(SENDER, distributionOf(own));
    // Jump the chain without sealing each message: a key that is far ahead.
    const far: OwnSenderKey = advance(own, MAX_SKIP_PER_CHAIN + 1);
    const tooFar = await sealMany(far, signer, 1, MAX_SKIP_PER_CHAIN + 1);
    const message = tooFar.sent[0];
    if (message === undefined) throw new Error("nothing sealed");
    expect(await failure(open(receiver, message))).toBe("too-far-ahead");

    const atLimit = await sealMany(advance(own, MAX_SKIP_PER_CHAIN), signer, 1, MAX_SKIP_PER_CHAIN);
    const last = atLimit.sent[0];
    if (last === undefined) throw new Error("nothing sealed");
    const opened = await open(receiver, last);
    expect(opened.key.skipped).toHaveLength(Math.min(MAX_SKIP_PER_CHAIN, MAX_SKIPPED_KEYS));
    const again = await sealMany(advance(atLimit.own, MAX_SKIP_PER_CHAIN), signer, 1, 2 * MAX_SKIP_PER_CHAIN + 1);
    const beyond = again.sent[0];
    if (beyond === undefined) throw new Error("nothing sealed");
    const twice = await open(opened.key, beyond);
    expect(twice.key.skipped).toHaveLength(MAX_SKIPPED_KEYS);
    // The oldest skipped keys went first.
    expect(twice.key.skipped[0]?.iteration).toBe(2 * MAX_SKIP_PER_CHAIN + 1 - MAX_SKIPPED_KEYS);
  });

  it("native and portable Ed25519 interoperate", async () => {
    for (const [seal, check] of [
      [webCryptoEd25519, nobleEd25519],
      [nobleEd25519, webCryptoEd25519],
    ] as const) {
      const { own, signer } = await sender(seal);
      const receiver = receiveDistribution(SENDER, distributionOf(own));
      const { sent } = await sealMany(own, signer, 2);
      const second = sent[1];
      if (second === undefined) throw new Error("nothing sealed");
      expect(read((await open(receiver, second, check)).plaintext)).toBe("message 1");
    }
  });

  it("refuses malformed distributions", () => {
    const base = { chatId: CHAT, epoch: 1, iteration: 0, chainKey: randomBytes(32), signingKey: randomBytes(32) };
    expect(() => receiveDistribution(SENDER, { ...base, chainKey: randomBytes(31) })).toThrow(/chain key/);
    expect(() => receiveDistribution(SENDER, { ...base, signingKey: randomBytes(33) })).toThrow(/signing key/);
    expect(() => receiveDistribution(SENDER, { ...base, iteration: -1 })).toThrow(/iteration/);
  });
});

/** The key `steps` messages later, as if they had been sealed and lost. */
function advance(key: OwnSenderKey, steps: number): OwnSenderKey {
  // Seal-free stepping: the chain is HMAC(chainKey, 2), as in sender-key.ts.
  let chainKey = key.chainKey;
  for (let i = 0; i < steps; i += 1) chainKey = hmacNext(chainKey);
  return { ...key, iteration: key.iteration + steps, chainKey };
}

function hmacNext(chainKey: Uint8Array): Uint8Array {
  return hmacSha256(chainKey, Uint8Array.of(2));
}

function tamper(message: Sent, part: "ciphertext" | "signature" | "iteration" | "route", at: number): Sent {
  const flip = (bytes: Uint8Array): Uint8Array => {
    const out = bytes.slice();
    const i = at % out.length;
    out[i] = (out[i] ?? 0) ^ 0x01;
    return out;
  };
  const { envelope } = message;
  switch (part) {
    case "ciphertext":
      return { ...message, envelope: { ...envelope, ciphertext: flip(envelope.ciphertext) } };
    case "signature":
      return { ...message, envelope: { ...envelope, signature: flip(envelope.signature) } };
    case "iteration":
      return { ...message, envelope: { ...envelope, iteration: envelope.iteration + 1 + (at % 3) } };
    case "route":
      return { ...message, messageId: flip(message.messageId) };
  }
}
