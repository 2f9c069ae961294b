/**
 * Group message crypto cost (issue 5): what one member device spends to send
 * a group message (encode the Content, encrypt once, sign, encode the
 * GroupEnvelope) and to receive one (decode, verify, decrypt, decode the
 * Content), as messages per second of CPU time of this process, on one core.
 * Our Sender Keys (client/core/src/group/sender-key.ts) run with each Ed25519
 * provider; @signalapp/libsignal-client's sender keys (groupEncrypt /
 * groupDecrypt, Rust) run in the same process as the peer.
 *
 * Each round seals a burst of 200-byte texts for `windowMs`, then opens them
 * all in order on the receiving side (its state from a distribution, as a
 * member device holds it). The figure is messages / (user + system CPU
 * seconds); wall-clock rates are reported too (they include time the machine
 * gave to other processes).
 */
import {
  ProtocolAddress,
  SenderKeyDistributionMessage,
  type SenderKeyRecord,
  SenderKeyStore,
  groupDecrypt,
  groupEncrypt,
  processSenderKeyDistributionMessage,
} from "@signalapp/libsignal-client";
import { loadavg } from "node:os";
import { nodeEd25519 } from "@remessenger/client-core/node";
import { type Ed25519Provider, nobleEd25519, webCryptoEd25519 } from "@remessenger/client-core";
import {
  createOwnSenderKey,
  distributionOf,
  groupRoute,
  openGroupMessage,
  receiveDistribution,
  sealGroupMessage,
} from "../client/core/src/group/sender-key.ts";
import { newId, randomBytes, Content, GroupEnvelope } from "@remessenger/protocol";
import type { BenchOptions, BenchReport, Benchmark } from "./benchmark.ts";

const TEXT = "a".repeat(200);
/** Messages per timed chunk (the clock is read between chunks). */
const CHUNK = 50;

interface Rates {
  /** Messages per CPU second. */
  sendCpu: number;
  receiveCpu: number;
  /** Messages per wall-clock second. */
  sendWall: number;
  receiveWall: number;
}

interface Clocks {
  cpuUs: number;
  wallMs: number;
}

function start(): { stop: () => Clocks } {
  const cpu = process.cpuUsage();
  const wall = performance.now();
  return {
    stop: () => {
      const used = process.cpuUsage(cpu);
      return { cpuUs: used.user + used.system, wallMs: performance.now() - wall };
    },
  };
}

function rates(sent: number, sending: Clocks, receiving: Clocks): Rates {
  return {
    sendCpu: (sent * 1e6) / sending.cpuUs,
    receiveCpu: (sent * 1e6) / receiving.cpuUs,
    sendWall: (sent * 1000) / sending.wallMs,
    receiveWall: (sent * 1000) / receiving.wallMs,
  };
}

/** Sends for `windowMs` (in chunks of CHUNK, the clock read between them); the clocks of the sending. */
async function sendFor(windowMs: number, sendOne: () => Promise<void>): Promise<Clocks> {
  const sending = start();
  const began = performance.now();
  while (performance.now() - began < windowMs) {
    for (let i = 0; i < CHUNK; i += 1) await sendOne();
  }
  return sending.stop();
}

async function measureOurs(ed25519: Ed25519Provider, windowMs: number): Promise<Rates> {
  const chatId = newId("chat");
  const deviceId = newId("device");
  const made = await createOwnSenderKey(ed25519, chatId, 1);
  let own = made.key;
  let received = receiveDistribution(deviceId, distributionOf(own));
  const messageIds: Uint8Array[] = [];
  const envelopes: Uint8Array[] = [];
  const sendOne = async (): Promise<void> => {
    const messageId = randomBytes(16);
    const plaintext = Content.encode({ body: { $case: "text", value: TEXT }, composedAtMs: Date.now() }).finish();
    const sealed = await sealGroupMessage(own, made.signer, plaintext, groupRoute(chatId, messageId, deviceId));
    own = sealed.key;
    messageIds.push(messageId);
    envelopes.push(GroupEnvelope.encode(sealed.envelope).finish());
  };
  const receiveOne = async (i: number): Promise<void> => {
    const messageId = messageIds[i];
    const bytes = envelopes[i];
    if (messageId === undefined || bytes === undefined) throw new Error(`no message ${i}`);
    const opened = await openGroupMessage(
      received,
      GroupEnvelope.decode(bytes),
      groupRoute(chatId, messageId, deviceId),
      ed25519,
    );
    received = opened.key;
    if (Content.decode(opened.plaintext).body?.$case !== "text") throw new Error("not the text sent");
  };
  await sendOne(); // warm-up: key import, code paths
  await receiveOne(0);
  messageIds.length = 0;
  envelopes.length = 0;

  const sendClocks = await sendFor(windowMs, sendOne);
  const receiving = start();
  for (let i = 0; i < envelopes.length; i += 1) await receiveOne(i);
  return rates(envelopes.length, sendClocks, receiving.stop());
}

class SenderKeys extends SenderKeyStore {
  private readonly map = new Map<string, SenderKeyRecord>();
  saveSenderKey(sender: ProtocolAddress, distributionId: string, record: SenderKeyRecord): Promise<void> {
    this.map.set(`${sender.toString()}/${distributionId}`, record);
    return Promise.resolve();
  }
  getSenderKey(sender: ProtocolAddress, distributionId: string): Promise<SenderKeyRecord | null> {
    return Promise.resolve(this.map.get(`${sender.toString()}/${distributionId}`) ?? null);
  }
}

async function measureLibsignal(windowMs: number): Promise<Rates> {
  const sender = ProtocolAddress.new("alice", 1);
  const distributionId = "d1b9b43a-7f3c-4b8e-9a54-6f5e0c3f2a10";
  const senderStore = new SenderKeys();
  const receiverStore = new SenderKeys();
  const distribution = await SenderKeyDistributionMessage.create(sender, distributionId, senderStore);
  await processSenderKeyDistributionMessage(sender, distribution, receiverStore);
  const ciphertexts: Array<Uint8Array<ArrayBuffer>> = [];
  const sendOne = async (): Promise<void> => {
    const plaintext = Content.encode({ body: { $case: "text", value: TEXT }, composedAtMs: Date.now() }).finish();
    const message = await groupEncrypt(sender, distributionId, senderStore, new Uint8Array(plaintext));
    ciphertexts.push(message.serialize());
  };
  const receiveOne = async (bytes: Uint8Array<ArrayBuffer>): Promise<void> => {
    const plaintext = await groupDecrypt(sender, receiverStore, bytes);
    if (Content.decode(plaintext).body?.$case !== "text") throw new Error("not the text sent");
  };
  await sendOne();
  const first = ciphertexts.pop();
  if (first !== undefined) await receiveOne(first);

  const sendClocks = await sendFor(windowMs, sendOne);
  const receiving = start();
  for (const bytes of ciphertexts) await receiveOne(bytes);
  return rates(ciphertexts.length, sendClocks, receiving.stop());
}

export const groupCrypto: Benchmark = {
  name: "group-crypto",
  summary: "group message send cost (encrypt + sign) and receive cost (verify + decrypt), msgs per CPU second",
  async run(options: BenchOptions): Promise<BenchReport> {
    const windowMs = options.isQuick ? 300 : 1_500;
    const rounds = options.isQuick ? 1 : 3;
    const runs: Array<{ name: string; label: string; measure: () => Promise<Rates> }> = [
      {
        name: "native",
        label: "ours, native curves (node:crypto Ed25519)",
        measure: () => measureOurs(nodeEd25519, windowMs),
      },
      {
        name: "webcrypto",
        label: "ours, WebCrypto Ed25519 (as in browsers)",
        measure: () => measureOurs(webCryptoEd25519, windowMs),
      },
      {
        name: "portable",
        label: "ours, portable curves (@noble Ed25519)",
        measure: () => measureOurs(nobleEd25519, windowMs),
      },
      { name: "libsignal", label: "libsignal-client sender keys (Rust)", measure: () => measureLibsignal(windowMs) },
    ];
    // Implementations take turns round after round; each figure is the best of its rounds.
    const best = new Map<string, Rates>();
    for (let round = 1; round <= rounds; round += 1) {
      for (const run of runs) {
        if (options.signal.aborted) throw new Error("aborted");
        options.log(`round ${round}/${rounds}: ${run.label} ...`);
        const measured = await run.measure();
        const previous = best.get(run.name);
        best.set(run.name, {
          sendCpu: Math.max(measured.sendCpu, previous?.sendCpu ?? 0),
          receiveCpu: Math.max(measured.receiveCpu, previous?.receiveCpu ?? 0),
          sendWall: Math.max(measured.sendWall, previous?.sendWall ?? 0),
          receiveWall: Math.max(measured.receiveWall, previous?.receiveWall ?? 0),
        });
      }
    }
    const pick = (name: string): Rates => best.get(name) ?? { sendCpu: 0, receiveCpu: 0, sendWall: 0, receiveWall: 0 };
    const signal = pick("libsignal");
    const load = loadavg()[0] ?? 0;
    return {
      name: "group-crypto",
      title: "Group message crypto per member device (one process, one core): ours vs libsignal sender keys",
      columns: [
        { key: "impl", label: "implementation" },
        { key: "sendCpu", label: "send msgs/CPU-s" },
        { key: "sendUs", label: "µs/send", digits: 1 },
        { key: "sendRatio", label: "x libsignal", digits: 2 },
        { key: "receiveCpu", label: "receive msgs/CPU-s" },
        { key: "receiveUs", label: "µs/receive", digits: 1 },
        { key: "receiveRatio", label: "x libsignal", digits: 2 },
        { key: "sendWall", label: "send msgs/s wall" },
        { key: "receiveWall", label: "receive msgs/s wall" },
      ],
      rows: runs.map((run) => {
        const r = pick(run.name);
        return {
          impl: run.label,
          sendCpu: r.sendCpu,
          sendUs: 1e6 / r.sendCpu,
          sendRatio: r.sendCpu / signal.sendCpu,
          receiveCpu: r.receiveCpu,
          receiveUs: 1e6 / r.receiveCpu,
          receiveRatio: r.receiveCpu / signal.receiveCpu,
          sendWall: r.sendWall,
          receiveWall: r.receiveWall,
        };
      }),
      notes: [
        "send = Content encode + one XChaCha20-Poly1305 seal + one Ed25519 signature + GroupEnvelope encode; receive = decode + signature check + open + Content decode (ours); libsignal: groupEncrypt / groupDecrypt (AES-CBC + HMAC, Ed25519-on-Curve25519 signature)",
        "200-byte texts, padded to 256 bytes (ours); the same key state in memory on both sides, no storage",
        "msgs/CPU-s = messages / (user + system CPU time of this process): the cost on one core, robust to other load; wall rates include time the machine gave to other processes",
        `each figure is the best of ${rounds} round(s) of a ${windowMs} ms sending window, implementations taking turns; ${String(navigator.hardwareConcurrency)} cores, load average ${load.toFixed(1)} at the end`,
      ],
    };
  },
};
