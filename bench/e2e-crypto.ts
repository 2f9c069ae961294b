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
 * Ours runs three times: native curves (node:crypto), WebCrypto curves and
 * portable ones (@stablelib, @noble). Records stay in memory on both sides
 * (no storage), so this measures the protocol code, not a database.
 * Ratios are ours / libsignal: above 1 is faster.
 *
 * The machine may be shared: the implementations take turns in short slices,
 * many per figure, and each figure is its operations over its time summed
 * over all its slices, so a burst of other load hits every implementation
 * alike instead of whichever happened to be measured then.
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
} from "../client/core/src/e2e/e2e-session.ts";
import {
  mlKemGenerateKeyPair,
  nobleMlKem,
  makeDeviceIdentity,
  webCryptoEd25519,
  nobleEd25519,
  type Ed25519Provider,
  type MlKemProvider,
  type DeviceIdentity,
} from "@remessenger/client-core";
import { nodeMlKem, nodeEd25519, nodeX25519 } from "@remessenger/client-core/node";
import {
  stablelibX25519,
  webCryptoX25519,
  pqPreKeyProof,
  signedPreKeyProof,
  type X25519KeyPair,
  type X25519Provider,
  type PreKeyBundle,
} from "@remessenger/protocol";
import type { BenchOptions, BenchReport, Benchmark } from "./benchmark.ts";

const TEXT = new Uint8Array(200).fill(0x61);
const ROUTE = new TextEncoder().encode("bench route");
const BURST = 100;
/** libsignal's CiphertextMessage.type() of a prekey message. */
const PRE_KEY_MESSAGE: number = CiphertextMessageType.PreKey;

type Phase = "setups" | "alternating" | "bursts";
const PHASES: readonly Phase[] = ["setups", "alternating", "bursts"];
/** Operations one step of each phase does. */
const PER_STEP: Record<Phase, number> = { setups: 1, alternating: 2, bursts: 2 * BURST };

type Rates = Record<Phase, number>;

/**
 * One implementation's work, a step at a time. `setup` makes a new session
 * (bundle -> session -> first message sealed and opened) and leaves the
 * messaging steps on it: `alternating` sends one message each way, `burst`
 * BURST one way and BURST back.
 */
interface Steps {
  setup(): Promise<void>;
  alternating(): Promise<void>;
  burst(): Promise<void>;
}

function stepOf(steps: Steps, phase: Phase): () => Promise<void> {
  if (phase === "setups") return () => steps.setup();
  return phase === "alternating" ? () => steps.alternating() : () => steps.burst();
}

interface Tally {
  ops: number;
  /** Wall-clock time. */
  ms: number;
  /** CPU time this process used meanwhile (all its threads). */
  cpuMs: number;
}

/** Runs `step` for about `sliceMs` (at least once); the operations done and the time taken. */
async function slice(sliceMs: number, per: number, step: () => Promise<void>): Promise<Tally> {
  let ops = 0;
  const started = performance.now();
  const cpu = process.cpuUsage();
  do {
    await step();
    ops += per;
  } while (performance.now() - started < sliceMs);
  const used = process.cpuUsage(cpu);
  return { ops, ms: performance.now() - started, cpuMs: (used.user + used.system) / 1000 };
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

async function oursSteps(x25519: X25519Provider, ed25519: Ed25519Provider, mlKem: MlKemProvider): Promise<Steps> {
  const deps = { x25519, ed25519, mlKem, nowMs: 0 };
  const alice = await ourDevice(x25519, ed25519);
  const bob = await ourDevice(x25519, ed25519);
  const oneTime = await x25519.generateKeyPair();
  const bundle = await ourBundle(bob, oneTime);
  const keysFor = () =>
    Promise.resolve({ signedPreKey: bob.signedPreKey, oneTimePreKey: oneTime, pqSecretKey: bob.pq.secretKey });
  // Alice's record and Bob's of the latest session, passed back and forth.
  let a: SessionRecord = EMPTY_RECORD;
  let b: SessionRecord = EMPTY_RECORD;
  const setup = async (): Promise<void> => {
    const started = await startSession(deps, alice.identity, EMPTY_RECORD, bundle, 0);
    const first = sealEnvelope(alice.identity, started, TEXT, ROUTE);
    const opened = await openEnvelope(deps, bob.identity, EMPTY_RECORD, first.envelope, ROUTE, keysFor);
    [a, b] = [first.record, opened.record];
  };
  const send = async (fromAlice: boolean): Promise<void> => {
    const [from, to, fromId, toId] = fromAlice ? [a, b, alice, bob] : [b, a, bob, alice];
    const sealed = sealEnvelope(fromId.identity, from, TEXT, ROUTE);
    const opened = await openEnvelope(deps, toId.identity, to, sealed.envelope, ROUTE, keysFor);
    if (fromAlice) [a, b] = [sealed.record, opened.record];
    else [b, a] = [sealed.record, opened.record];
  };
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
  await setup();
  return {
    setup,
    // Bob answers first: Alice's next message is then a plain ratchet message, as every one after.
    alternating: async () => {
      await send(false);
      await send(true);
    },
    burst: async () => {
      await burst(true);
      await burst(false);
    },
  };
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

async function libsignalSteps(): Promise<Steps> {
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
  await setup();
  return {
    setup,
    // Bob answers first, so alice's next messages are plain ones.
    alternating: async () => {
      await decrypt(false, await encrypt(false), false);
      await decrypt(true, await encrypt(true), false);
    },
    burst: async () => {
      for (const fromAlice of [true, false]) {
        const batch: Array<Uint8Array<ArrayBuffer>> = [];
        for (let i = 0; i < BURST; i += 1) batch.push(await encrypt(fromAlice));
        for (const bytes of batch) await decrypt(fromAlice, bytes, false);
      }
    },
  };
}

// ── report ───────────────────────────────────────────────────────────────

export const e2eCrypto: Benchmark = {
  name: "e2e-crypto",
  summary: "E2E session setups/s and 200-byte messages/s (alternating, bursts of 100), ours vs libsignal",
  async run(options: BenchOptions): Promise<BenchReport> {
    const sliceMs = options.isQuick ? 150 : 250;
    const slices = options.isQuick ? 2 : 12;
    const contenders: Array<{ name: string; prepare: () => Promise<Steps> }> = [
      { name: "libsignal-client", prepare: () => libsignalSteps() },
      { name: "ours, native curves", prepare: () => oursSteps(nodeX25519, nodeEd25519, nodeMlKem) },
      { name: "ours, WebCrypto curves", prepare: () => oursSteps(webCryptoX25519, webCryptoEd25519, nobleMlKem) },
      { name: "ours, portable curves", prepare: () => oursSteps(stablelibX25519, nobleEd25519, nobleMlKem) },
    ];
    const prepared: Array<{ name: string; steps: Steps }> = [];
    for (const contender of contenders) prepared.push({ name: contender.name, steps: await contender.prepare() });
    const totals = new Map<string, Record<Phase, Tally>>();
    for (const phase of PHASES) {
      options.log(`${phase}: ${slices} slices of ${sliceMs} ms per implementation, taking turns ...`);
      // One uncounted slice each first: the JIT warms up on everyone's time but nobody's figure.
      for (const { steps } of prepared) await slice(sliceMs, PER_STEP[phase], stepOf(steps, phase));
      for (let round = 0; round < slices; round += 1) {
        if (options.signal.aborted) throw new Error("aborted");
        // A different one goes first each round, so none always follows the same neighbour.
        for (let turn = 0; turn < prepared.length; turn += 1) {
          const entry = prepared[(round + turn) % prepared.length];
          if (entry === undefined) continue;
          const done = await slice(sliceMs, PER_STEP[phase], stepOf(entry.steps, phase));
          const zero = (): Tally => ({ ops: 0, ms: 0, cpuMs: 0 });
          const total = totals.get(entry.name) ?? { setups: zero(), alternating: zero(), bursts: zero() };
          const before = total[phase];
          total[phase] = { ops: before.ops + done.ops, ms: before.ms + done.ms, cpuMs: before.cpuMs + done.cpuMs };
          totals.set(entry.name, total);
        }
      }
    }
    const pick = (name: string, per: "ms" | "cpuMs" = "ms"): Rates => {
      const total = totals.get(name);
      const rate = (phase: Phase): number =>
        total === undefined || total[phase][per] === 0 ? 0 : (total[phase].ops * 1000) / total[phase][per];
      return { setups: rate("setups"), alternating: rate("alternating"), bursts: rate("bursts") };
    };
    // Per second of CPU time: what each costs, whatever else the machine was doing meanwhile.
    const signalCpu = pick("libsignal-client", "cpuMs");
    const cpuRatios = (name: string): string => {
      const r = pick(name, "cpuMs");
      return PHASES.map((phase) => `${phase} x${(r[phase] / signalCpu[phase]).toFixed(2)}`).join(", ");
    };
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
        `per second of this process's CPU time instead (other load on the machine left out): native ${cpuRatios("ours, native curves")}; WebCrypto ${cpuRatios("ours, WebCrypto curves")}; portable ${cpuRatios("ours, portable curves")} (x libsignal)`,
        `each figure is operations over time in ${slices} slices of ${sliceMs} ms, the implementations taking turns slice by slice (after one uncounted slice each); ${String(navigator.hardwareConcurrency)} cores`,
      ],
    };
  },
};
