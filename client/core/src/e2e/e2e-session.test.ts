import { hex } from "@scure/base";
import { describe, expect, it } from "vitest";
import {
  type PreKeyBundle,
  type PreKeyMessage,
  type X25519KeyPair,
  E2eEnvelope,
  pqPreKeyProof,
  signedPreKeyProof,
  webCryptoX25519,
} from "@remessenger/protocol";
import {
  EMPTY_RECORD,
  OpenError,
  type SessionRecord,
  openEnvelope,
  sealEnvelope,
  startSession,
} from "./e2e-session.ts";
import { mlKemGenerateKeyPair } from "../crypto/ml-kem.ts";
import { paddedSize } from "./padding.ts";
import { type DeviceIdentity, type ResponderKeys, SetupError, makeDeviceIdentity } from "./session-setup.ts";
import { webCryptoEd25519 } from "../crypto/webcrypto-ed25519.ts";

const deps = { x25519: webCryptoX25519, ed25519: webCryptoEd25519, nowMs: 0 };
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const read = (b: Uint8Array): string => new TextDecoder().decode(b);
const ROUTE = text("chat c1 / message 1 / from d1 to d2");

interface Device {
  id: string;
  identity: DeviceIdentity;
  signedPreKey: X25519KeyPair;
  oneTime: Map<number, X25519KeyPair>;
  pq: { publicKey: Uint8Array; secretKey: Uint8Array };
}

async function device(id: string): Promise<Device> {
  const signer = await webCryptoEd25519.signerFromSeed(webCryptoEd25519.generateSeed());
  const oneTime = new Map<number, X25519KeyPair>();
  for (let i = 1; i <= 3; i += 1) oneTime.set(i, await webCryptoX25519.generateKeyPair());
  return {
    id,
    identity: await makeDeviceIdentity(signer, await webCryptoX25519.generateKeyPair()),
    signedPreKey: await webCryptoX25519.generateKeyPair(),
    oneTime,
    pq: mlKemGenerateKeyPair(),
  };
}

async function bundleOf(d: Device, oneTimeId: number | undefined): Promise<PreKeyBundle> {
  const oneTime = oneTimeId === undefined ? undefined : d.oneTime.get(oneTimeId);
  return {
    userId: "u",
    deviceId: d.id,
    identityKey: d.identity.signer.publicKey,
    identityDhKey: d.identity.dh.publicKey,
    identityDhSignature: d.identity.dhSignature,
    signedPreKey: {
      keyId: 7,
      publicKey: d.signedPreKey.publicKey,
      signature: await d.identity.signer.sign(signedPreKeyProof(7, d.signedPreKey.publicKey)),
    },
    oneTimePreKey:
      oneTime === undefined || oneTimeId === undefined ? undefined : { keyId: oneTimeId, publicKey: oneTime.publicKey },
    pqPreKey: {
      keyId: 9,
      publicKey: d.pq.publicKey,
      signature: await d.identity.signer.sign(pqPreKeyProof(9, d.pq.publicKey)),
    },
    isPqLastResort: true,
  };
}

function keysOf(d: Device): (m: PreKeyMessage) => Promise<ResponderKeys> {
  return (m) => {
    const oneTime = m.hasOneTimePreKey ? d.oneTime.get(m.oneTimePreKeyId) : undefined;
    if (m.hasOneTimePreKey && oneTime === undefined) return Promise.reject(new SetupError("one-time prekey is gone"));
    return Promise.resolve({ signedPreKey: d.signedPreKey, oneTimePreKey: oneTime, pqSecretKey: d.pq.secretKey });
  };
}

async function open(d: Device, record: SessionRecord, envelope: Uint8Array, route = ROUTE) {
  return openEnvelope(deps, d.identity, record, envelope, route, keysOf(d));
}

async function failure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof OpenError) return error.reason;
    throw error;
  }
  return "opened";
}

describe("E2E sessions (PQXDH setup + Double Ratchet)", () => {
  it.each([{ oneTimeId: 1 }, { oneTimeId: undefined }])(
    "sets up from a bundle (one-time prekey $oneTimeId) and talks both ways",
    async ({ oneTimeId }) => {
      const alice = await device("da");
      const bob = await device("db");
      let atAlice = await startSession(deps, alice.identity, EMPTY_RECORD, await bundleOf(bob, oneTimeId), 0);
      let atBob: SessionRecord = EMPTY_RECORD;
      for (let round = 0; round < 3; round += 1) {
        const first = sealEnvelope(alice.identity, atAlice, text(`a${round}`), ROUTE);
        atAlice = first.record;
        // Until bob answers, alice's messages carry the setup.
        expect(E2eEnvelope.decode(first.envelope).body?.$case).toBe(round === 0 ? "preKey" : "ratchet");
        const opened = await open(bob, atBob, first.envelope);
        expect(read(opened.plaintext)).toBe(`a${round}`);
        if (round === 0) expect(opened.consumed).toEqual({ oneTimePreKeyId: oneTimeId, pqPreKeyId: 9 });
        expect(hex.encode(opened.peerIdentityKey)).toBe(hex.encode(alice.identity.signer.publicKey));
        atBob = opened.record;
        const reply = sealEnvelope(bob.identity, atBob, text(`b${round}`), ROUTE);
        atBob = reply.record;
        const back = await open(alice, atAlice, reply.envelope);
        expect(read(back.plaintext)).toBe(`b${round}`);
        atAlice = back.record;
      }
    },
  );

  it("repeats the setup in every message until the first answer, and each opens once", async () => {
    const alice = await device("da");
    const bob = await device("db");
    let atAlice = await startSession(deps, alice.identity, EMPTY_RECORD, await bundleOf(bob, 2), 0);
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 3; i += 1) {
      const sealed = sealEnvelope(alice.identity, atAlice, text(`m${i}`), ROUTE);
      atAlice = sealed.record;
      sent.push(sealed.envelope);
      expect(E2eEnvelope.decode(sealed.envelope).body?.$case).toBe("preKey");
    }
    // The first is lost; the others still set the session up, in any order.
    let atBob: SessionRecord = EMPTY_RECORD;
    for (const i of [2, 1]) {
      const opened = await open(bob, atBob, sent[i]!);
      expect(read(opened.plaintext)).toBe(`m${i}`);
      atBob = opened.record;
      bob.oneTime.delete(2); // consumed with the first record saved
    }
    expect(await failure(open(bob, atBob, sent[2]!))).toBe("replay");
    expect(atBob.previous).toHaveLength(0);
  });

  it("refuses a bundle whose signed prekey, PQ prekey or identity DH key is not signed by the identity key", async () => {
    const alice = await device("da");
    const bob = await device("db");
    const good = await bundleOf(bob, 1);
    const forged = await device("dx");
    const badSpk = { ...good, signedPreKey: { ...good.signedPreKey!, publicKey: forged.signedPreKey.publicKey } };
    const badPq = { ...good, pqPreKey: { ...good.pqPreKey!, publicKey: forged.pq.publicKey } };
    const badDh = { ...good, identityDhKey: forged.identity.dh.publicKey };
    await expect(startSession(deps, alice.identity, EMPTY_RECORD, badSpk, 0)).rejects.toThrow(
      /signed prekey .* not signed/,
    );
    await expect(startSession(deps, alice.identity, EMPTY_RECORD, badPq, 0)).rejects.toThrow(/PQ prekey .* not signed/);
    await expect(startSession(deps, alice.identity, EMPTY_RECORD, badDh, 0)).rejects.toThrow(
      /identity DH key .* not signed/,
    );
  });

  it("refuses a prekey message with a forged identity, a used one-time prekey, or another routing header", async () => {
    const alice = await device("da");
    const bob = await device("db");
    const atAlice = await startSession(deps, alice.identity, EMPTY_RECORD, await bundleOf(bob, 3), 0);
    const { envelope } = sealEnvelope(alice.identity, atAlice, text("hi"), ROUTE);
    expect(await failure(open(bob, EMPTY_RECORD, envelope, text("chat c2 / message 1 / from d1 to d2")))).toBe(
      "bad-setup",
    );
    const decoded = E2eEnvelope.decode(envelope);
    if (decoded.body?.$case !== "preKey") throw new Error("expected a prekey message");
    const forged = await device("dx");
    const swapped = E2eEnvelope.encode({
      body: { $case: "preKey", value: { ...decoded.body.value, identityKey: forged.identity.signer.publicKey } },
    }).finish();
    expect(await failure(open(bob, EMPTY_RECORD, swapped))).toBe("bad-setup");
    bob.oneTime.delete(3);
    expect(await failure(open(bob, EMPTY_RECORD, envelope))).toBe("bad-setup");
  });

  it("says no-session for a ratchet message when the state is lost, and a new session heals it", async () => {
    const alice = await device("da");
    const bob = await device("db");
    let atAlice = await startSession(deps, alice.identity, EMPTY_RECORD, await bundleOf(bob, 1), 0);
    const first = sealEnvelope(alice.identity, atAlice, text("one"), ROUTE);
    atAlice = first.record;
    let atBob = (await open(bob, EMPTY_RECORD, first.envelope)).record;
    const reply = sealEnvelope(bob.identity, atBob, text("two"), ROUTE);
    atAlice = (await open(alice, atAlice, reply.envelope)).record;
    const lost = sealEnvelope(alice.identity, atAlice, text("three"), ROUTE);
    atAlice = lost.record;
    // Bob lost everything: the message cannot open.
    expect(await failure(open(bob, EMPTY_RECORD, lost.envelope))).toBe("no-session");
    // Bob starts a new session from alice's bundle; alice accepts it and answers in it.
    atBob = await startSession(deps, bob.identity, EMPTY_RECORD, await bundleOf(alice, 1), 0);
    const reset = sealEnvelope(bob.identity, atBob, text("reset"), ROUTE);
    atBob = reset.record;
    const atAliceNew = await open(alice, atAlice, reset.envelope);
    expect(atAliceNew.record.previous).toHaveLength(1);
    const next = sealEnvelope(alice.identity, atAliceNew.record, text("four"), ROUTE);
    expect(read((await open(bob, atBob, next.envelope)).plaintext)).toBe("four");
  });

  it("settles on one session when both devices start one at the same time", async () => {
    const alice = await device("da");
    const bob = await device("db");
    let atAlice = await startSession(deps, alice.identity, EMPTY_RECORD, await bundleOf(bob, 1), 0);
    let atBob = await startSession(deps, bob.identity, EMPTY_RECORD, await bundleOf(alice, 1), 0);
    const fromAlice = sealEnvelope(alice.identity, atAlice, text("a"), ROUTE);
    const fromBob = sealEnvelope(bob.identity, atBob, text("b"), ROUTE);
    atAlice = (await open(alice, fromAlice.record, fromBob.envelope)).record;
    atBob = (await open(bob, fromBob.record, fromAlice.envelope)).record;
    for (let i = 0; i < 4; i += 1) {
      const a = sealEnvelope(alice.identity, atAlice, text(`a${i}`), ROUTE);
      atAlice = a.record;
      const opened = await open(bob, atBob, a.envelope);
      expect(read(opened.plaintext)).toBe(`a${i}`);
      atBob = opened.record;
      const b = sealEnvelope(bob.identity, atBob, text(`b${i}`), ROUTE);
      atBob = b.record;
      const back = await open(alice, atAlice, b.envelope);
      expect(read(back.plaintext)).toBe(`b${i}`);
      atAlice = back.record;
    }
  });

  it("pads plaintexts to size buckets, so lengths within a bucket look the same", async () => {
    const alice = await device("da");
    const bob = await device("db");
    let atAlice = await startSession(deps, alice.identity, EMPTY_RECORD, await bundleOf(bob, undefined), 0);
    const sizes = new Set<number>();
    for (const length of [1, 10, 40, 63]) {
      const sealed = sealEnvelope(alice.identity, atAlice, new Uint8Array(length), ROUTE);
      atAlice = sealed.record;
      sizes.add(sealed.envelope.length);
    }
    expect(sizes.size).toBe(1);
    expect([paddedSize(0), paddedSize(63), paddedSize(64), paddedSize(200), paddedSize(5000)]).toEqual([
      64, 64, 128, 256, 8192,
    ]);
  });
});
