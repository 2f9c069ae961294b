/**
 * E2E crypto throughput, ours against @signalapp/libsignal-client in the same
 * process and run (issue 4):
 *
 *   - full session setups per second: the initiator turns a prekey bundle into
 *     a session and seals a first 200-byte message, the responder opens it
 *     (PQXDH: X25519 + ML-KEM-768 here; X3DH + Kyber1024 in libsignal). The
 *     bundles (with a fresh one-time prekey each) are made before the clock
 *     starts, on both sides.
 *   - messages per second, 200-byte texts, each sealed and opened once:
 *     alternating directions (a DH ratchet step at every message) and one-way
 *     bursts of 100 (then the other way).
 *
 * Ours runs twice, with the native X25519 (WebCrypto) and the portable one
 * (@stablelib); Ed25519 is WebCrypto in both. Records stay in memory on both
 * sides (no storage), so this measures the protocol code, not a database.
 * Ratios are ours / libsignal: above 1 is faster.
 */
import {
  CiphertextMessageType,
  IdentityChange,
  IdentityKeyStore,
  KEMKeyPair,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyBundle as SignalPreKeyBundle,
  PreKeyRecord,
  PreKeySignalMessage,
  PreKeyStore,
  PrivateKey,
  ProtocolAddress,
  type PublicKey,
  SessionRecord as SignalSessionRecord,
  SessionStore,
  SignalMessage,
  SignedPreKeyRecord,
  SignedPreKeyStore,
  processPreKeyBundle,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from "@signalapp/libsignal-client";
import {
  EMPTY_RECORD,
  type SessionRecord,
  openEnvelope,
  sealEnvelope,
  startSession,
} from "../client/core/src/crypto/e2e-session.ts";
import { type MlKemProvider, mlKemGenerateKeyPair, nobleMlKem } from "../client/core/src/crypto/ml-kem.ts";
import { nodeMlKem } from "../client/cli/src/crypto/node-ml-kem.ts";
import { type DeviceIdentity, makeDeviceIdentity } from "../client/core/src/crypto/session-setup.ts";
import { stablelibX25519 } from "../client/core/src/crypto/stablelib-x25519.ts";
import { webCryptoEd25519 } from "../client/core/src/crypto/webcrypto-ed25519.ts";
import { webCryptoX25519 } from "../client/core/src/crypto/webcrypto-x25519.ts";
import type { Ed25519Provider } from "../client/core/src/crypto/device-signer.ts";
import { nodeEd25519 } from "../client/cli/src/crypto/node-ed25519.ts";
import { nodeX25519 } from "../client/cli/src/crypto/node-x25519.ts";
import { nobleEd25519 } from "../client/core/src/crypto/noble-ed25519.ts";
import type { X25519KeyPair, X25519Provider } from "../client/core/src/crypto/x25519.ts";
import { pqPreKeyProof, signedPreKeyProof } from "../client/core/src/wire/prekey-proofs.ts";
import type { PreKeyBundle } from "../client/core/src/wire/proto.ts";
import type { BenchOptions, BenchReport, Benchmark } from "./benchmark.ts";

const TEXT = new Uint8Array(200).fill(0x61);
const ROUTE = new TextEncoder().encode("bench route");
const BURST = 100;
/** libsignal's CiphertextMessage.type() of a prekey message. */
const PRE_KEY_MESSAGE: number = CiphertextMessageType.PreKey;

interface Rates {
  setups: number;
  alternating: number;
  bursts: number;
}

/** Runs `step` (which does `per` operations) until `windowMs` passed; operations per second. */
async function rate(windowMs: number, per: number, step: () => Promise<void>): Promise<number> {
  await step(); // warm-up, uncounted
  let count = 0;
  const started = performance.now();
  while (performance.now() - started < windowMs) {
    await step();
    count += per;
  }
  return (count * 1000) / (performance.now() - started);
}

// ── ours ─────────────────────────────────────────────────────────────────

interface OurDevice {
  identity: DeviceIdentity;
  signedPreKey: X25519KeyPair;
  pq: { publicKey: Uint8Array; secretKey: Uint8Array };
}

async function ourDevice(x25519: X25519Provider, ed25519: Ed25519Provider): Promise<OurDevice> {
  const signer = await ed25519.signerFromSeed(ed25519.generateSeed());
  return {
    identity: await makeDeviceIdentity(signer, await x25519.generateKeyPair()),
    signedPreKey: await x25519.generateKeyPair(),
    pq: mlKemGenerateKeyPair(),
  };
}

async function ourBundle(device: OurDevice, oneTime: X25519KeyPair): Promise<PreKeyBundle> {
  const signer = device.identity.signer;
  return {
    userId: "u",
    deviceId: "d",
    identityKey: signer.publicKey,
    identityDhKey: device.identity.dh.publicKey,
    identityDhSignature: device.identity.dhSignature,
    signedPreKey: {
      keyId: 1,
      publicKey: device.signedPreKey.publicKey,
      signature: await signer.sign(signedPreKeyProof(1, device.signedPreKey.publicKey)),
    },
    oneTimePreKey: { keyId: 2, publicKey: oneTime.publicKey },
    pqPreKey: {
      keyId: 3,
      publicKey: device.pq.publicKey,
      signature: await signer.sign(pqPreKeyProof(3, device.pq.publicKey)),
    },
    isPqLastResort: true,
  };
}

async function measureOurs(
  x25519: X25519Provider,
  ed25519: Ed25519Provider,
  mlKem: MlKemProvider,
  windowMs: number,
): Promise<Rates> {
  const deps = { x25519, ed25519, mlKem, nowMs: 0 };
  const alice = await ourDevice(x25519, ed25519);
  const bob = await ourDevice(x25519, ed25519);
  const oneTime = await x25519.generateKeyPair();
  const bundle = await ourBundle(bob, oneTime);
  const keysFor = () =>
    Promise.resolve({ signedPreKey: bob.signedPreKey, oneTimePreKey: oneTime, pqSecretKey: bob.pq.secretKey });

  const setup = async (): Promise<{ a: SessionRecord; b: SessionRecord }> => {
    const started = await startSession(deps, alice.identity, EMPTY_RECORD, bundle, 0);
    const first = sealEnvelope(alice.identity, started, TEXT, ROUTE);
    const opened = await openEnvelope(deps, bob.identity, EMPTY_RECORD, first.envelope, ROUTE, keysFor);
    return { a: first.record, b: opened.record };
  };
  const setups = await rate(windowMs, 1, async () => {
    await setup();
  });

  let { a, b } = await setup();
  // Alice's records and Bob's, passed back and forth.
  const send = async (fromAlice: boolean): Promise<void> => {
    const [from, to, fromId, toId] = fromAlice ? [a, b, alice, bob] : [b, a, bob, alice];
    const sealed = sealEnvelope(fromId.identity, from, TEXT, ROUTE);
    const opened = await openEnvelope(deps, toId.identity, to, sealed.envelope, ROUTE, keysFor);
    if (fromAlice) [a, b] = [sealed.record, opened.record];
    else [b, a] = [sealed.record, opened.record];
  };
  const alternating = await rate(windowMs, 2, async () => {
    await send(false);
    await send(true);
  });
  const burst = async (fromAlice: boolean): Promise<void> => {
    const [fromId, toId] = fromAlice ? [alice, bob] : [bob, alice];
    const envelopes: Uint8Array[] = [];
    for (let i = 0; i < BURST; i += 1) {
      const sealed = sealEnvelope(fromId.identity, fromAlice ? a : b, TEXT, ROUTE);
      if (fromAlice) a = sealed.record;
      else b = sealed.record;
      envelopes.push(sealed.envelope);
    }
    for (const envelope of envelopes) {
      const opened = await openEnvelope(deps, toId.identity, fromAlice ? b : a, envelope, ROUTE, keysFor);
      if (fromAlice) b = opened.record;
      else a = opened.record;
    }
  };
  const bursts = await rate(windowMs, 2 * BURST, async () => {
    await burst(true);
    await burst(false);
  });
  return { setups, alternating, bursts };
}

// ── libsignal ────────────────────────────────────────────────────────────

class Sessions extends SessionStore {
  private readonly map = new Map<string, SignalSessionRecord>();
  saveSession(name: ProtocolAddress, record: SignalSessionRecord): Promise<void> {
    this.map.set(name.toString(), record);
    return Promise.resolve();
  }
  getSession(name: ProtocolAddress): Promise<SignalSessionRecord | null> {
    return Promise.resolve(this.map.get(name.toString()) ?? null);
  }
  getExistingSessions(addresses: ProtocolAddress[]): Promise<SignalSessionRecord[]> {
    return Promise.resolve(addresses.flatMap((a) => this.map.get(a.toString()) ?? []));
  }
}

class Identities extends IdentityKeyStore {
  private readonly key: PrivateKey;
  constructor(key: PrivateKey) {
    super();
    this.key = key;
  }
  getIdentityKey(): Promise<PrivateKey> {
    return Promise.resolve(this.key);
  }
  getLocalRegistrationId(): Promise<number> {
    return Promise.resolve(1);
  }
  saveIdentity(): Promise<IdentityChange> {
    return Promise.resolve(IdentityChange.NewOrUnchanged);
  }
  isTrustedIdentity(): Promise<boolean> {
    return Promise.resolve(true);
  }
  getIdentity(): Promise<PublicKey | null> {
    return Promise.resolve(null);
  }
}

class PreKeys extends PreKeyStore {
  readonly map = new Map<number, PreKeyRecord>();
  savePreKey(id: number, record: PreKeyRecord): Promise<void> {
    this.map.set(id, record);
    return Promise.resolve();
  }
  getPreKey(id: number): Promise<PreKeyRecord> {
    const record = this.map.get(id);
    return record === undefined ? Promise.reject(new Error(`no prekey ${id}`)) : Promise.resolve(record);
  }
  removePreKey(): Promise<void> {
    return Promise.resolve(); // kept: every setup in the loop reuses the one bundle
  }
}

class SignedPreKeys extends SignedPreKeyStore {
  readonly map = new Map<number, SignedPreKeyRecord>();
  saveSignedPreKey(id: number, record: SignedPreKeyRecord): Promise<void> {
    this.map.set(id, record);
    return Promise.resolve();
  }
  getSignedPreKey(id: number): Promise<SignedPreKeyRecord> {
    const record = this.map.get(id);
    return record === undefined ? Promise.reject(new Error(`no signed prekey ${id}`)) : Promise.resolve(record);
  }
}

class KyberPreKeys extends KyberPreKeyStore {
  readonly map = new Map<number, KyberPreKeyRecord>();
  saveKyberPreKey(id: number, record: KyberPreKeyRecord): Promise<void> {
    this.map.set(id, record);
    return Promise.resolve();
  }
  getKyberPreKey(id: number): Promise<KyberPreKeyRecord> {
    const record = this.map.get(id);
    return record === undefined ? Promise.reject(new Error(`no kyber prekey ${id}`)) : Promise.resolve(record);
  }
  markKyberPreKeyUsed(): Promise<void> {
    return Promise.resolve();
  }
}

async function measureLibsignal(windowMs: number): Promise<Rates> {
  const aliceKey = PrivateKey.generate();
  const bobKey = PrivateKey.generate();
  const aliceAddress = ProtocolAddress.new("alice", 1);
  const bobAddress = ProtocolAddress.new("bob", 1);
  const bobPreKeys = new PreKeys();
  const bobSigned = new SignedPreKeys();
  const bobKyber = new KyberPreKeys();
  const preKey = PrivateKey.generate();
  const signed = PrivateKey.generate();
  const kyber = KEMKeyPair.generate();
  const signedSignature = bobKey.sign(signed.getPublicKey().serialize());
  const kyberSignature = bobKey.sign(kyber.getPublicKey().serialize());
  await bobPreKeys.savePreKey(2, PreKeyRecord.new(2, preKey.getPublicKey(), preKey));
  await bobSigned.saveSignedPreKey(
    1,
    SignedPreKeyRecord.new(1, Date.now(), signed.getPublicKey(), signed, signedSignature),
  );
  await bobKyber.saveKyberPreKey(3, KyberPreKeyRecord.new(3, Date.now(), kyber, kyberSignature));
  const bundle = SignalPreKeyBundle.new(
    1,
    1,
    2,
    preKey.getPublicKey(),
    1,
    signed.getPublicKey(),
    signedSignature,
    bobKey.getPublicKey(),
    3,
    kyber.getPublicKey(),
    kyberSignature,
  );
  let aliceSessions = new Sessions();
  let bobSessions = new Sessions();
  const aliceIds = new Identities(aliceKey);
  const bobIds = new Identities(bobKey);

  const encrypt = async (fromAlice: boolean): Promise<Uint8Array<ArrayBuffer>> => {
    const message = await signalEncrypt(
      TEXT,
      fromAlice ? bobAddress : aliceAddress,
      fromAlice ? aliceAddress : bobAddress,
      fromAlice ? aliceSessions : bobSessions,
      fromAlice ? aliceIds : bobIds,
    );
    return message.serialize();
  };
  const decrypt = async (toBob: boolean, bytes: Uint8Array<ArrayBuffer>, isPreKey: boolean): Promise<void> => {
    const from = toBob ? aliceAddress : bobAddress;
    const local = toBob ? bobAddress : aliceAddress;
    const sessions = toBob ? bobSessions : aliceSessions;
    const ids = toBob ? bobIds : aliceIds;
    if (isPreKey) {
      await signalDecryptPreKey(
        PreKeySignalMessage.deserialize(bytes),
        from,
        local,
        sessions,
        ids,
        bobPreKeys,
        bobSigned,
        bobKyber,
      );
    } else {
      await signalDecrypt(SignalMessage.deserialize(bytes), from, local, sessions, ids);
    }
  };
  const setup = async (): Promise<void> => {
    aliceSessions = new Sessions();
    bobSessions = new Sessions();
    await processPreKeyBundle(bundle, bobAddress, aliceAddress, aliceSessions, aliceIds);
    const first = await signalEncrypt(TEXT, bobAddress, aliceAddress, aliceSessions, aliceIds);
    if (first.type() !== PRE_KEY_MESSAGE) throw new Error("expected a prekey message");
    await decrypt(true, first.serialize(), true);
  };
  const setups = await rate(windowMs, 1, setup);

  await setup();
  // Bob answers once, so alice's next messages are plain ones.
  const isPreKeyPhase = { value: false };
  const alternating = await rate(windowMs, 2, async () => {
    await decrypt(false, await encrypt(false), false);
    await decrypt(true, await encrypt(true), isPreKeyPhase.value);
  });
  const bursts = await rate(windowMs, 2 * BURST, async () => {
    for (const fromAlice of [true, false]) {
      const batch: Array<Uint8Array<ArrayBuffer>> = [];
      for (let i = 0; i < BURST; i += 1) batch.push(await encrypt(fromAlice));
      for (const bytes of batch) await decrypt(fromAlice, bytes, false);
    }
  });
  return { setups, alternating, bursts };
}

// ── report ───────────────────────────────────────────────────────────────

export const e2eCrypto: Benchmark = {
  name: "e2e-crypto",
  summary: "E2E session setups/s and 200-byte messages/s (alternating, bursts of 100), ours vs libsignal",
  async run(options: BenchOptions): Promise<BenchReport> {
    const windowMs = options.isQuick ? 400 : 1_500;
    const rounds = options.isQuick ? 1 : 3;
    // The implementations take turns, round after round, and each figure is the best
    // of its rounds: other load on the machine then hits all of them alike.
    const runs: Array<{ name: string; measure: () => Promise<Rates> }> = [
      { name: "libsignal-client", measure: () => measureLibsignal(windowMs) },
      { name: "ours, native curves", measure: () => measureOurs(nodeX25519, nodeEd25519, nodeMlKem, windowMs) },
      {
        name: "ours, WebCrypto curves",
        measure: () => measureOurs(webCryptoX25519, webCryptoEd25519, nobleMlKem, windowMs),
      },
      {
        name: "ours, portable curves",
        measure: () => measureOurs(stablelibX25519, nobleEd25519, nobleMlKem, windowMs),
      },
    ];
    const best = new Map<string, Rates>();
    for (let round = 1; round <= rounds; round += 1) {
      for (const run of runs) {
        if (options.signal.aborted) throw new Error("aborted");
        options.log(`round ${round}/${rounds}: ${run.name} ...`);
        const rates = await run.measure();
        const previous = best.get(run.name);
        best.set(run.name, {
          setups: Math.max(rates.setups, previous?.setups ?? 0),
          alternating: Math.max(rates.alternating, previous?.alternating ?? 0),
          bursts: Math.max(rates.bursts, previous?.bursts ?? 0),
        });
      }
    }
    const pick = (name: string): Rates => best.get(name) ?? { setups: 0, alternating: 0, bursts: 0 };
    const signal = pick("libsignal-client");
    const native = pick("ours, native curves");
    const webCrypto = pick("ours, WebCrypto curves");
    const portable = pick("ours, portable curves");
    const row = (name: string, r: Rates) => ({
      impl: name,
      setups: r.setups,
      setupRatio: r.setups / signal.setups,
      alternating: r.alternating,
      alternatingRatio: r.alternating / signal.alternating,
      bursts: r.bursts,
      burstRatio: r.bursts / signal.bursts,
    });
    return {
      name: "e2e-crypto",
      title: "E2E crypto (one process, same run): ours vs @signalapp/libsignal-client",
      columns: [
        { key: "impl", label: "implementation" },
        { key: "setups", label: "setups/s" },
        { key: "setupRatio", label: "x libsignal", digits: 2 },
        { key: "alternating", label: "msgs/s alternating" },
        { key: "alternatingRatio", label: "x libsignal", digits: 2 },
        { key: "bursts", label: "msgs/s bursts of 100" },
        { key: "burstRatio", label: "x libsignal", digits: 2 },
      ],
      rows: [
        row("ours, native curves (node:crypto)", native),
        row("ours, WebCrypto curves (as in browsers)", webCrypto),
        row("ours, portable curves (@stablelib, @noble)", portable),
        row("libsignal-client 0.103 (Rust)", signal),
      ],
      notes: [
        "a message = one 200-byte text sealed and opened; setup = bundle -> session -> first message sealed and opened",
        "ours: PQXDH with X25519 + ML-KEM-768 (node:crypto in the native row, @noble/post-quantum in the others), Double Ratchet with header encryption, XChaCha20-Poly1305, padding; libsignal: X3DH + Kyber1024 and its own ratchet",
        "records kept in memory on both sides; native = node:crypto X25519, Ed25519 and ML-KEM (the CLI's providers); WebCrypto = the browser providers run in Node; portable = @stablelib X25519 + @noble Ed25519",
        `each figure is the best of ${rounds} round(s) of a ${windowMs} ms window (after one warm-up step), the implementations taking turns; ${String(navigator.hardwareConcurrency)} cores`,
      ],
    };
  },
};
