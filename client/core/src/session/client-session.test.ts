/**
 * The session shell's rules that the real server cannot show from outside:
 * the order of "stored" and "acked", ack batching, backoff timing, stall
 * detection. The server side is played frame by frame over an in-memory
 * transport with a manual clock; client/test/session.test.ts runs the same
 * session against the real server.
 */
import { describe, expect, it } from "vitest";
import { ManualClock, settle } from "../../../test/manual-clock.ts";
import { type MemoryPipe, memoryTransports } from "../../../test/memory-transport.ts";
import { nobleEd25519 } from "../crypto/noble-ed25519.ts";
import {
  type ClientRequestFrame,
  type ChatAck,
  type Message,
  type PreKeyBundle,
  SendMessageRequest,
  pqPreKeyProof,
  signedPreKeyProof,
  stablelibX25519,
} from "@remessenger/protocol";
import { mlKemGenerateKeyPair } from "../crypto/ml-kem.ts";
import type { ReceivedMessage } from "../store/client-store.ts";
import { MemoryClientStore } from "../store/memory-client-store.ts";
import { ClientSession, type SessionTiming } from "./client-session.ts";
import { PREKEY_UPKEEP_INTERVAL_MS } from "./connection-keeper.ts";
import { SIGNED_PREKEY_ROTATION_MS } from "../e2e/prekey-upkeep.ts";
import { makeDeviceIdentity } from "../e2e/session-setup.ts";

const USER = "u" + "a".repeat(26);
const OTHER = "u" + "b".repeat(26);
const DEVICE = "d" + "a".repeat(26);
const CHAT = "c" + "a".repeat(26);
const OTHER_DEVICE = "d" + "b".repeat(26);

/** A store whose saveReceived waits until the test releases it. */
class GatedStore extends MemoryClientStore {
  gate: Promise<void> | undefined;
  override async saveReceived(message: ReceivedMessage): Promise<boolean> {
    await this.gate;
    return super.saveReceived(message);
  }
}

interface Peer {
  isStalled: boolean;
  /** Sends go unanswered (the answer is lost). */
  isIgnoringSends: boolean;
  seq: number;
}

/** The other user's device, with a real prekey bundle the session can start a session from. */
async function otherDevice(): Promise<{ bundle: PreKeyBundle }> {
  const signer = await nobleEd25519.signerFromSeed(new Uint8Array(32).fill(2));
  const identity = await makeDeviceIdentity(signer, await stablelibX25519.generateKeyPair());
  const spk = await stablelibX25519.generateKeyPair();
  const pq = mlKemGenerateKeyPair();
  return {
    bundle: {
      userId: OTHER,
      deviceId: OTHER_DEVICE,
      identityKey: signer.publicKey,
      identityDhKey: identity.dh.publicKey,
      identityDhSignature: identity.dhSignature,
      signedPreKey: {
        keyId: 1,
        publicKey: spk.publicKey,
        signature: await signer.sign(signedPreKeyProof(1, spk.publicKey)),
      },
      oneTimePreKey: undefined,
      pqPreKey: { keyId: 2, publicKey: pq.publicKey, signature: await signer.sign(pqPreKeyProof(2, pq.publicKey)) },
      isPqLastResort: true,
    },
  };
}

/** Requests the E2E layer makes besides the scenario's own. */
const E2E_REQUESTS = new Set(["getChat", "getUser", "getPreKeyBundles", "publishPreKeys"]);

async function setup(store = new MemoryClientStore(), timing: Partial<SessionTiming> = {}) {
  const other = await otherDevice();
  const signer = await nobleEd25519.signerFromSeed(new Uint8Array(32));
  const clock = new ManualClock();
  const peer: Peer = { isStalled: false, isIgnoringSends: false, seq: 0 };
  const answer = (frame: ClientRequestFrame, pipe: MemoryPipe): void => {
    const { requestId, request } = frame;
    switch (request.$case) {
      case "login":
        pipe.push({
          requestId,
          body: {
            $case: "login",
            value: {
              userId: USER,
              deviceId: DEVICE,
              sessionToken: "t",
              serverTimeMs: 0,
              sessionExpiresAtMs: 0,
              preKeyStock: undefined,
            },
          },
        });
        return;
      case "subscribe":
        pipe.push({ requestId, body: { $case: "subscribe", value: { push: undefined } } });
        return;
      case "ping":
        if (!peer.isStalled)
          pipe.push({ requestId, body: { $case: "ping", value: { clientTimeMs: 0, serverTimeMs: 0 } } });
        return;
      case "ack":
        if (requestId !== 0) pipe.push({ requestId, body: { $case: "ack", value: {} } });
        return;
      case "sendMessage":
        if (peer.isIgnoringSends) return;
        pipe.push({
          requestId,
          body: { $case: "sendMessage", value: { seq: ++peer.seq, duplicate: false, serverTimeMs: 0 } },
        });
        return;
      // The E2E layer's lookups: the other user has one device with a real bundle.
      case "getChat":
        pipe.push({
          requestId,
          body: {
            $case: "getChat",
            value: {
              chat: {
                chatId: CHAT,
                kind: 1,
                title: "",
                memberUserIds: [USER, OTHER],
                headSeq: 0,
                createdAtMs: 0,
                createdByUserId: USER,
                receipts: [],
              },
            },
          },
        });
        return;
      case "getUser": {
        const isMe = request.value.userId === USER;
        const device = {
          deviceId: isMe ? DEVICE : OTHER_DEVICE,
          identityKey: isMe ? signer.publicKey : other.bundle.identityKey,
          createdAtMs: 0,
          approvedByDeviceId: "",
          approvalSignature: new Uint8Array(0),
          approvalExpiresAtMs: 0,
        };
        pipe.push({
          requestId,
          body: {
            $case: "getUser",
            value: { user: { userId: request.value.userId, displayName: "x", devices: [device] } },
          },
        });
        return;
      }
      case "getPreKeyBundles":
        pipe.push({ requestId, body: { $case: "getPreKeyBundles", value: { bundles: [other.bundle] } } });
        return;
      case "publishPreKeys":
        pipe.push({
          requestId,
          body: {
            $case: "publishPreKeys",
            value: { stock: { oneTimePreKeys: 50, oneTimePqPreKeys: 0, lowWater: 20, hasBundle: true } },
          },
        });
        return;
      case "getChallenge":
      case "register":
      case "createChat":
      case "listChats":
      case "linkDevice":
      case "getGroupOperations":
        return; // not part of these scenarios: left unanswered
    }
  };
  const transports = memoryTransports(answer, (pipe) => {
    pipe.push({
      requestId: 0,
      body: {
        $case: "hello",
        value: {
          challenge: { nonce: new Uint8Array(32), expiresAtMs: 0 },
          serverTimeMs: 0,
          serverVersion: "t",
          maxFrameBytes: 0,
          tunnel: undefined,
        },
      },
    });
  });
  const identity = await makeDeviceIdentity(signer, await stablelibX25519.generateKeyPair());
  const session = new ClientSession({
    profile: { serverUrl: "http://test", userId: USER, deviceId: DEVICE, displayName: "A", registeredAtMs: 0 },
    signer,
    store,
    e2e: { identity, storageKey: new Uint8Array(32), x25519: stablelibX25519, ed25519: nobleEd25519 },
    transports,
    clock,
    random: () => 0.5,
    timing: {
      pingIntervalMs: 1_000,
      pingTimeoutMs: 3_000,
      degradedAfterMs: 500,
      stableAfterMs: 10_000,
      backoff: { initialMs: 100, maxMs: 1_000 },
      ...timing,
    },
  });
  await session.start();
  await settle();
  const pipe = (): MemoryPipe => {
    const last = transports.pipes.at(-1);
    if (last === undefined) throw new Error("no connection yet");
    return last;
  };
  const acks = (): ChatAck[][] =>
    pipe()
      .received.filter((f) => f.request.$case === "ack" && f.requestId === 0)
      .map((f) => (f.request.$case === "ack" ? f.request.value.acks : []));
  return { clock, peer, transports, session, pipe, acks, store };
}

function message(seq: number, sender = OTHER): Promise<Message> {
  return Promise.resolve({
    chatId: CHAT,
    seq,
    messageId: new Uint8Array(16).fill(seq),
    senderUserId: sender,
    senderDeviceId: "d" + "b".repeat(26),
    serverTimeMs: seq,
    // Opaque to this shell's rules: the session stores it as undecryptable and acks it all the same.
    payload: new Uint8Array(0),
    devicePayloads: [{ deviceId: DEVICE, ciphertext: Uint8Array.of(seq) }],
  });
}

function scenarioRequests(pipe: MemoryPipe): string[] {
  return pipe.received.map((f) => f.request.$case).filter((kind) => !E2E_REQUESTS.has(kind));
}

async function push(pipe: MemoryPipe, ...messages: Message[]): Promise<void> {
  for (const value of messages)
    pipe.push({ requestId: 0, body: { $case: "push", value: { push: { $case: "message", value } } } });
  await settle();
}

describe("ClientSession (scripted server)", () => {
  it("logs in, subscribes and reports connected after the sync", async () => {
    const { session, pipe } = await setup();
    expect(session.status.state).toBe("syncing");
    expect(scenarioRequests(pipe())).toEqual(["login", "subscribe"]);
    pipe().push({
      requestId: 0,
      body: { $case: "push", value: { push: { $case: "syncComplete", value: { pushed: 0, serverTimeMs: 0 } } } },
    });
    await settle();
    expect(session.status.state).toBe("connected");
  });

  it("acks a message only after it is stored", async () => {
    const store = new GatedStore();
    const release = Promise.withResolvers<void>();
    store.gate = release.promise;
    const { pipe, acks } = await setup(store);
    await push(pipe(), await message(1));
    expect(acks()).toEqual([]);
    release.resolve();
    await settle();
    expect(acks()).toEqual([[{ chatId: CHAT, throughSeq: 1 }]]);
    expect((await store.listReceived(CHAT, 0, 10)).map((m) => m.seq)).toEqual([1]);
  });

  it("acks a burst cumulatively in one ack, and shows each message once", async () => {
    const { session, pipe, acks } = await setup();
    const shown: number[] = [];
    session.events.on("message", (e) => shown.push(e.message.seq));
    await push(pipe(), ...(await Promise.all([1, 2, 3, 4, 5].map((seq) => message(seq)))));
    expect(acks()).toEqual([[{ chatId: CHAT, throughSeq: 5 }]]);
    expect(shown).toEqual([1, 2, 3, 4, 5]);
  });

  it("skips (but acks) a message at or below the highest stored one", async () => {
    const store = new MemoryClientStore();
    await store.saveReceived({
      chatId: CHAT,
      seq: 3,
      messageId: "00".repeat(16),
      senderUserId: OTHER,
      senderDeviceId: DEVICE,
      serverTimeMs: 0,
      content: undefined,
    });
    const { session, pipe, acks } = await setup(store);
    const shown: number[] = [];
    session.events.on("message", (e) => shown.push(e.message.seq));
    await push(pipe(), await message(2), await message(3), await message(4));
    expect(shown).toEqual([4]);
    expect(acks().flat().at(-1)).toEqual({ chatId: CHAT, throughSeq: 4 });
  });

  it("takes no more messages after stopReceiving: they stay unacked on the server", async () => {
    const { session, pipe, acks, store } = await setup();
    session.events.on("message", () => {
      session.stopReceiving();
    });
    await push(pipe(), await message(1), await message(2));
    expect(acks().flat()).toEqual([{ chatId: CHAT, throughSeq: 1 }]);
    expect((await store.listReceived(CHAT, 0, 10)).map((m) => m.seq)).toEqual([1]);
  });

  it("marks sent messages delivered on another user's receipt, not on its own devices'", async () => {
    const { session, pipe, store } = await setup();
    const entry = await session.send(CHAT, "hi");
    await settle();
    expect((await store.getOutboxEntry(entry.messageId))?.seq).toBe(1);
    const receipt = (userId: string) => ({
      requestId: 0,
      body: {
        $case: "push" as const,
        value: {
          push: { $case: "receipt" as const, value: { chatId: CHAT, userId, deviceId: DEVICE, throughSeq: 1 } },
        },
      },
    });
    pipe().push(receipt(USER));
    await settle();
    expect((await store.getOutboxEntry(entry.messageId))?.state).toBe("sent");
    pipe().push(receipt(OTHER));
    await settle();
    expect((await store.getOutboxEntry(entry.messageId))?.state).toBe("delivered");
  });

  it("reconnects after a drop with backoff, logs in again and resends the outbox", async () => {
    const { session, pipe, transports, clock, store } = await setup();
    transports.refuseWith = "connection refused";
    pipe().drop("network gone");
    await settle();
    expect(session.status).toMatchObject({
      state: "offline",
      failedAttempts: 1,
      lastFailure: { reason: expect.stringMatching(/network gone/) as unknown },
    });
    const entry = await session.send(CHAT, "while offline");
    // First retry after 50–100 ms (jitter 0.5 → 75 ms); it fails too, the next waits longer.
    await clock.advance(74);
    expect(transports.pipes).toHaveLength(1);
    await clock.advance(1);
    expect(session.status).toMatchObject({
      state: "offline",
      failedAttempts: 2,
      lastFailure: { reason: "connection refused" },
    });
    expect((session.status.nextRetryAtMs ?? 0) - clock.nowMs()).toBe(150);
    transports.refuseWith = undefined;
    await clock.advance(150);
    expect(session.status.state).toBe("syncing");
    expect(scenarioRequests(pipe())).toEqual(["login", "subscribe", "sendMessage"]);
    expect((await store.getOutboxEntry(entry.messageId))?.state).toBe("sent");
  });

  it("resends the very same sealed bytes after a lost answer, and moves the ratchet once per message", async () => {
    const { session, pipe, clock, store, peer } = await setup();
    peer.isIgnoringSends = true;
    const entry = await session.send(CHAT, "exactly once");
    await settle();
    const sentBytes = (): string[] =>
      pipe()
        .received.filter((f) => f.request.$case === "sendMessage")
        .map((f) =>
          f.request.$case === "sendMessage"
            ? Buffer.from(SendMessageRequest.encode(f.request.value).finish()).toString("hex")
            : "",
        );
    const [first] = sentBytes();
    expect(first).toBeDefined();
    const sessionKey = `session/${OTHER_DEVICE}`;
    const versionAfterSeal = (await store.readE2e([sessionKey])).get(sessionKey)?.version;
    // The answer never comes: the connection drops, the session reconnects and resends.
    pipe().drop("answer lost");
    peer.isIgnoringSends = false;
    await clock.advance(100);
    await settle();
    expect(sentBytes()).toEqual([first]);
    expect((await store.getOutboxEntry(entry.messageId))?.state).toBe("sent");
    expect((await store.readE2e([sessionKey])).get(sessionKey)?.version).toBe(versionAfterSeal);
  });

  it("goes degraded when a ping is overdue, and drops the connection at the ping deadline", async () => {
    const { session, peer, clock, pipe } = await setup();
    peer.isStalled = true;
    const first = pipe();
    await clock.advance(1_000 + 499);
    expect(session.status.state).toBe("syncing");
    await clock.advance(1);
    expect(session.status.state).toBe("degraded");
    await clock.advance(2_500);
    expect(first.isClosed).toBe(true);
    expect(session.status).toMatchObject({
      state: "offline",
      lastFailure: { reason: expect.stringMatching(/no answer to a ping within 3000 ms/) as unknown },
    });
    peer.isStalled = false;
    await clock.advance(1_000);
    expect(session.status.state).toBe("syncing");
  });

  it("pings at once when a send meets a silent server, and drops it long before the keep-alive would", async () => {
    const { session, peer, clock, pipe } = await setup(new MemoryClientStore(), {
      pingIntervalMs: 60_000,
      pingTimeoutMs: 30_000,
      stallAfterMs: 1_000,
      stallPingTimeoutMs: 2_000,
    });
    await clock.advance(10);
    const first = pipe();
    // An idle silent server is left alone until the keep-alive.
    peer.isStalled = true;
    peer.isIgnoringSends = true;
    await clock.advance(5_000);
    expect(first.isClosed).toBe(false);
    expect(first.received.filter((f) => f.request.$case === "ping")).toHaveLength(0);
    // A send that gets no answer: within the stall watch's half-period a ping goes out, and its deadline drops the pipe.
    await session.send(CHAT, "into the void");
    await settle();
    await clock.advance(1_500);
    expect(first.received.filter((f) => f.request.$case === "ping")).toHaveLength(1);
    await clock.advance(2_000);
    expect(first.isClosed).toBe(true);
    expect(session.status.lastFailure?.reason).toMatch(/no answer to a ping within 2000 ms/);
    peer.isStalled = false;
    peer.isIgnoringSends = false;
    await clock.advance(1_000);
    expect(pipe()).not.toBe(first);
  });

  it("rotates its signed prekey on schedule while it stays logged in, on the same connection", async () => {
    const DAY = 24 * 60 * 60 * 1000;
    // Keep-alive and stall watch out of the way: a week passes on this clock.
    const { clock, pipe, transports } = await setup(undefined, {
      pingIntervalMs: 30 * DAY,
      pingTimeoutMs: 30 * DAY,
      stallAfterMs: 30 * DAY,
    });
    const publishes = () =>
      pipe().received.flatMap((f) => (f.request.$case === "publishPreKeys" ? [f.request.value] : []));
    for (let i = 0; i < 100 && publishes().length === 0; i += 1) await settle();
    // At login: the first full bundle.
    expect(publishes()).toHaveLength(1);
    const firstId = publishes()[0]?.signedPreKey?.keyId;
    await clock.advance(SIGNED_PREKEY_ROTATION_MS - PREKEY_UPKEEP_INTERVAL_MS);
    expect(publishes()).toHaveLength(1);
    await clock.advance(2 * PREKEY_UPKEEP_INTERVAL_MS);
    expect(publishes()).toHaveLength(2);
    expect(publishes()[1]).toMatchObject({ oneTimePreKeys: [], lastResortPqPreKey: undefined });
    expect(publishes()[1]?.signedPreKey?.keyId).not.toBe(firstId);
    expect(transports.pipes).toHaveLength(1);
  });

  it("starts again after stop on the same store: logs in anew, shows nothing twice, sends what stayed queued", async () => {
    const { session, pipe, acks, peer, store } = await setup();
    const shown: number[] = [];
    session.events.on("message", (e) => shown.push(e.message.seq));
    await push(pipe(), await message(1));
    peer.isIgnoringSends = true;
    const entry = await session.send(CHAT, "sent after the restart");
    await settle();
    await session.stop();
    const first = pipe();
    expect(first.isClosed).toBe(true);
    expect(session.status.state).toBe("stopped");
    expect((await store.getOutboxEntry(entry.messageId))?.state).toBe("queued");
    peer.isIgnoringSends = false;
    await session.start();
    await settle();
    expect(pipe()).not.toBe(first);
    expect(session.status.state).toBe("syncing");
    expect(scenarioRequests(pipe()).slice(0, 2)).toEqual(["login", "subscribe"]);
    await push(pipe(), await message(1), await message(2));
    expect(shown).toEqual([1, 2]);
    expect(acks().flat().at(-1)).toEqual({ chatId: CHAT, throughSeq: 2 });
    expect((await store.getOutboxEntry(entry.messageId))?.state).toBe("sent");
    await session.stop();
    expect(session.status.state).toBe("stopped");
  });

  it("stops cleanly: the connection closes and the state is stopped", async () => {
    const { session, pipe } = await setup();
    await session.stop();
    expect(pipe().isClosed).toBe(true);
    expect(session.status.state).toBe("stopped");
  });
});
