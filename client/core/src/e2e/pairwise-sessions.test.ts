import { describe, expect, it } from "vitest";
import { makeDeviceIdentity } from "./session-setup.ts";
import { nobleEd25519 } from "../crypto/noble-ed25519.ts";
import {
  stablelibX25519,
  linkApprovalProof,
  randomBytes,
  ChatKind,
  type Device,
  type Message,
  type PreKeyBundle,
  type PublishPreKeysRequest,
  E2eEnvelope,
  SendMessageRequest,
} from "@remessenger/protocol";
import { MemoryClientStore } from "../store/memory-client-store.ts";
import { IdentityChangedError } from "./pairwise-errors.ts";
import { E2eLock } from "./e2e-lock.ts";
import { type E2eServer, PairwiseSessions } from "./pairwise-sessions.ts";
import {
  MAX_SIGNED_PREKEYS,
  SIGNED_PREKEY_GRACE_MS,
  SIGNED_PREKEY_ROTATION_MS,
  type SignedPreKeyPolicy,
  keptSignedPreKeys,
} from "./prekey-upkeep.ts";
import { type Clock, systemClock } from "../runtime/clock.ts";
import { contentText, textContent } from "../session/payload-codec.ts";

const CHAT = "c" + "a".repeat(26);
const ALICE = "u" + "a".repeat(26);
const BOB = "u" + "b".repeat(26);

/** The server's side, in memory: devices, published bundles (one-time keys handed out once), one chat. */
class FakeServer {
  readonly devices = new Map<string, Device[]>();
  readonly bundles = new Map<string, PreKeyBundle>();
  readonly oneTime = new Map<string, PreKeyBundle["oneTimePreKey"][]>();
  readonly published: PublishPreKeysRequest[] = [];

  forDevice(userId: string, deviceId: string, identityKey: Uint8Array): E2eServer {
    return {
      getUser: (id) => Promise.resolve({ userId: id, displayName: id, devices: this.devices.get(id) ?? [] }),
      getChat: () =>
        Promise.resolve({
          chatId: CHAT,
          kind: ChatKind.CHAT_KIND_DIRECT,
          title: "",
          memberUserIds: [ALICE, BOB],
          headSeq: 0,
          createdAtMs: 0,
          createdByUserId: ALICE,
          receipts: [],
        }),
      getPreKeyBundles: (id, deviceIds) =>
        Promise.resolve(
          (this.devices.get(id) ?? [])
            .filter((d) => deviceIds.length === 0 || deviceIds.includes(d.deviceId))
            .flatMap((d) => {
              const bundle = this.bundles.get(d.deviceId);
              return bundle === undefined ? [] : [{ ...bundle, oneTimePreKey: this.oneTime.get(d.deviceId)?.shift() }];
            }),
        ),
      publishPreKeys: (request) => {
        this.published.push(request);
        // A full bundle (a device's keys made anew) replaces what the device id held; absent fields keep it.
        const isFull = request.identityDhKey.length > 0;
        const before = isFull ? undefined : this.bundles.get(deviceId);
        const kept = isFull ? [] : (this.oneTime.get(deviceId) ?? []);
        this.oneTime.set(deviceId, [...kept, ...request.oneTimePreKeys]);
        this.bundles.set(deviceId, {
          userId,
          deviceId,
          identityKey,
          identityDhKey: before?.identityDhKey ?? request.identityDhKey,
          identityDhSignature: before?.identityDhSignature ?? request.identityDhSignature,
          signedPreKey: request.signedPreKey ?? before?.signedPreKey,
          oneTimePreKey: undefined,
          pqPreKey: request.lastResortPqPreKey ?? before?.pqPreKey,
          isPqLastResort: true,
        });
        return Promise.resolve({ oneTimePreKeys: 50, oneTimePqPreKeys: 0, lowWater: 20, hasBundle: true });
      },
    };
  }
}

async function device(
  server: FakeServer,
  userId: string,
  deviceId: string,
  approval?: Partial<Device>,
  options: { clock?: Clock; signedPreKeys?: Partial<SignedPreKeyPolicy> } = {},
) {
  const signer = await nobleEd25519.signerFromSeed(nobleEd25519.generateSeed());
  const identity = await makeDeviceIdentity(signer, await stablelibX25519.generateKeyPair());
  const store = new MemoryClientStore();
  const codec = new PairwiseSessions({
    userId,
    deviceId,
    identity,
    storageKey: randomBytes(32),
    store,
    lock: new E2eLock(),
    x25519: stablelibX25519,
    ed25519: nobleEd25519,
    clock: options.clock ?? systemClock,
    ...(options.signedPreKeys === undefined ? {} : { signedPreKeys: options.signedPreKeys }),
  });
  codec.setServer(server.forDevice(userId, deviceId, signer.publicKey));
  const list = (server.devices.get(userId) ?? []).filter((d) => d.deviceId !== deviceId);
  list.push({
    deviceId,
    identityKey: signer.publicKey,
    createdAtMs: 0,
    approvedByDeviceId: "",
    approvalSignature: new Uint8Array(0),
    approvalExpiresAtMs: 0,
    ...approval,
  });
  server.devices.set(userId, list);
  await codec.maintainPreKeys(undefined);
  return { codec, store, signer, deviceId, userId };
}

type TestDevice = Awaited<ReturnType<typeof device>>;

async function sealFor(from: TestDevice, text: string): Promise<Message> {
  const messageId = Array.from(randomBytes(16), (b) => b.toString(16).padStart(2, "0")).join("");
  const sealed = await from.codec.seal(CHAT, messageId, textContent(text, 0));
  await from.store.writeE2e(sealed.writes);
  const request = SendMessageRequest.decode(sealed.sealed);
  return {
    chatId: CHAT,
    seq: 1,
    messageId: request.messageId,
    senderUserId: from.userId,
    senderDeviceId: from.deviceId,
    serverTimeMs: 0,
    payload: request.payload,
    devicePayloads: request.devicePayloads,
  };
}

async function openAt(to: TestDevice, message: Message): Promise<string> {
  const opened = await to.codec.open(message);
  if (opened.kind !== "content") return `undecryptable: ${opened.reason}`;
  await to.store.writeE2e(opened.writes);
  return contentText(opened.content) ?? "";
}

describe("PairwiseSessions trust", () => {
  it("blocks sending to a user whose device key changed until the change is accepted", async () => {
    const server = new FakeServer();
    const alice = await device(server, ALICE, "d" + "a".repeat(26));
    const bob = await device(server, BOB, "d" + "b".repeat(26));
    expect(await openAt(bob, await sealFor(alice, "hello"))).toBe("hello");

    // The same device id now has another key (a reinstall, or a server lying).
    const impostor = await device(server, BOB, bob.deviceId);
    const known = await alice.codec.knownUser(BOB, true);
    expect(known?.devices[0]).toMatchObject({ trust: "changed", previousKey: bob.signer.publicKey });
    await expect(sealFor(alice, "secret")).rejects.toBeInstanceOf(IdentityChangedError);

    await alice.codec.acceptIdentity(BOB);
    await alice.codec.resetSession(bob.deviceId);
    expect(await openAt(impostor, await sealFor(alice, "accepted"))).toBe("accepted");
  });

  it("trusts a new device approved by a trusted one, and blocks one without an approval", async () => {
    const server = new FakeServer();
    const alice = await device(server, ALICE, "d" + "a".repeat(26));
    const bob = await device(server, BOB, "d" + "b".repeat(26));
    expect(await openAt(bob, await sealFor(alice, "one"))).toBe("one");

    const laptopSigner = await nobleEd25519.signerFromSeed(nobleEd25519.generateSeed());
    const expiresAtMs = Date.now() + 60_000;
    const approval = await bob.signer.sign(linkApprovalProof(BOB, laptopSigner.publicKey, expiresAtMs));
    // The approval names the key; the device made under it must carry that key.
    const laptop = await device(server, BOB, "d" + "c".repeat(26), {
      approvedByDeviceId: bob.deviceId,
      approvalSignature: approval,
      approvalExpiresAtMs: expiresAtMs,
    });
    const laptopEntry = server.devices.get(BOB)?.find((d) => d.deviceId === laptop.deviceId);
    if (laptopEntry === undefined) throw new Error("no laptop");
    // Approved for another key than the laptop's: not trusted.
    const seen = await alice.codec.knownUser(BOB, true);
    expect(seen?.devices.find((d) => d.deviceId === laptop.deviceId)?.trust).toBe("changed");
    await expect(sealFor(alice, "two")).rejects.toBeInstanceOf(IdentityChangedError);

    // With an approval over the laptop's real key it is trusted, and gets its own copy.
    laptopEntry.approvalSignature = await bob.signer.sign(linkApprovalProof(BOB, laptop.signer.publicKey, expiresAtMs));
    await alice.codec.acceptIdentity(BOB); // clears the earlier verdict; the check below is a fresh first look
    const fresh = await device(server, ALICE, "d" + "d".repeat(26));
    const message = await sealFor(fresh, "three");
    expect(await openAt(laptop, message)).toBe("three");
    expect(await openAt(bob, message)).toBe("three");
  });
});

function toMessage(from: TestDevice, sealed: Uint8Array): Message {
  const request = SendMessageRequest.decode(sealed);
  return {
    chatId: CHAT,
    seq: 1,
    messageId: request.messageId,
    senderUserId: from.userId,
    senderDeviceId: from.deviceId,
    serverTimeMs: 0,
    payload: request.payload,
    devicePayloads: request.devicePayloads,
  };
}

async function linkApproved(server: FakeServer, approver: TestDevice, deviceId: string): Promise<TestDevice> {
  const expiresAtMs = Date.now() + 60_000;
  const linked = await device(server, approver.userId, deviceId, {
    approvedByDeviceId: approver.deviceId,
    approvalExpiresAtMs: expiresAtMs,
  });
  const entry = server.devices.get(approver.userId)?.find((d) => d.deviceId === deviceId);
  if (entry === undefined) throw new Error("not linked");
  entry.approvalSignature = await approver.signer.sign(
    linkApprovalProof(approver.userId, linked.signer.publicKey, expiresAtMs),
  );
  return linked;
}

describe("PairwiseSessions reseal", () => {
  it("seals only for a device linked after the first seal, keeps the other payloads byte for byte, and both devices read it", async () => {
    const server = new FakeServer();
    const alice = await device(server, ALICE, "d" + "a".repeat(26));
    const bob = await device(server, BOB, "d" + "b".repeat(26));
    expect(await openAt(bob, await sealFor(alice, "first"))).toBe("first");

    const messageId = "ab".repeat(16);
    const content = textContent("after the link", 0);
    const sealed = await alice.codec.seal(CHAT, messageId, content);
    await alice.store.writeE2e(sealed.writes);
    const laptop = await linkApproved(server, bob, "d" + "c".repeat(26));
    const phoneSession = await alice.store.readE2e([`session/${bob.deviceId}`]);

    const resealed = await alice.codec.reseal(sealed.sealed, content, {
      missingDeviceIds: [laptop.deviceId],
      staleDeviceIds: [],
    });
    // Only the new device's session is written: the phone's ratchet does not move again.
    expect(resealed.writes.map((w) => w.key)).toEqual([`session/${laptop.deviceId}`]);
    await alice.store.writeE2e(resealed.writes);
    expect(await alice.store.readE2e([`session/${bob.deviceId}`])).toEqual(phoneSession);
    const before = SendMessageRequest.decode(sealed.sealed).devicePayloads;
    const after = SendMessageRequest.decode(resealed.sealed).devicePayloads;
    expect(after.slice(0, before.length)).toEqual(before);
    expect(after.map((p) => p.deviceId)).toEqual([bob.deviceId, laptop.deviceId]);

    const message = toMessage(alice, resealed.sealed);
    expect(await openAt(bob, message)).toBe("after the link");
    expect(await openAt(laptop, message)).toBe("after the link");
  });

  it("drops the payload of a device the server calls stale", async () => {
    const server = new FakeServer();
    const alice = await device(server, ALICE, "d" + "a".repeat(26));
    const bob = await device(server, BOB, "d" + "b".repeat(26));
    const laptop = await linkApproved(server, bob, "d" + "c".repeat(26));
    const content = textContent("only the phone", 0);
    const sealed = await alice.codec.seal(CHAT, "cd".repeat(16), content);
    expect(SendMessageRequest.decode(sealed.sealed).devicePayloads).toHaveLength(2);
    server.devices.set(
      BOB,
      (server.devices.get(BOB) ?? []).filter((d) => d.deviceId !== laptop.deviceId),
    );
    const resealed = await alice.codec.reseal(sealed.sealed, content, {
      missingDeviceIds: [],
      staleDeviceIds: [laptop.deviceId],
    });
    expect(resealed.writes).toEqual([]);
    expect(SendMessageRequest.decode(resealed.sealed).devicePayloads).toEqual(
      SendMessageRequest.decode(sealed.sealed).devicePayloads.filter((p) => p.deviceId === bob.deviceId),
    );
  });
});

/** Time that moves only when the test says so; timers never fire (the codec sets none). */
function handClock(startMs: number): Clock & { advance(ms: number): void } {
  let nowMs = startMs;
  return {
    nowMs: () => nowMs,
    setTimer: () => () => undefined,
    advance: (ms) => {
      nowMs += ms;
    },
  };
}

/** The signed prekey id a message's prekey envelope for `to` names. */
function signedPreKeyIdOf(message: Message, to: TestDevice): number | undefined {
  const payload = message.devicePayloads.find((p) => p.deviceId === to.deviceId);
  const body = payload === undefined ? undefined : E2eEnvelope.decode(payload.ciphertext).body;
  return body?.$case === "preKey" ? body.value.signedPreKeyId : undefined;
}

describe("signed prekey rotation", () => {
  const DAY = 24 * 60 * 60 * 1000;

  it("replaces the signed prekey weekly, opens setups from the old bundle for the grace period, then forgets its key", async () => {
    const server = new FakeServer();
    const clock = handClock(1_000_000);
    const bob = await device(server, BOB, "d" + "b".repeat(26), undefined, { clock });
    // Three of Alice's devices fetch Bob's bundle now and seal a first message each; two stay in flight.
    const senders = await Promise.all(
      ["a", "c", "e"].map((c) => device(server, ALICE, "d" + c.repeat(26), undefined, { clock })),
    );
    const sealedBefore = [];
    for (const [i, sender] of senders.entries()) sealedBefore.push(await sealFor(sender, `before ${i}`));
    const [soon, late, tooLate] = sealedBefore;
    if (soon === undefined || late === undefined || tooLate === undefined) throw new Error("not sealed");
    const oldId = server.bundles.get(bob.deviceId)?.signedPreKey?.keyId;
    expect(signedPreKeyIdOf(soon, bob)).toBe(oldId);

    // Not yet a week: nothing is published.
    const publishes = server.published.length;
    clock.advance(SIGNED_PREKEY_ROTATION_MS - DAY);
    await bob.codec.maintainPreKeys(undefined);
    expect(server.published).toHaveLength(publishes);

    // A week: a new signed prekey, and nothing else (no one-time keys, no new PQ key or identity).
    clock.advance(DAY);
    await bob.codec.maintainPreKeys(undefined);
    expect(server.published).toHaveLength(publishes + 1);
    const rotation = server.published.at(-1);
    expect(rotation).toMatchObject({ oneTimePreKeys: [], lastResortPqPreKey: undefined });
    expect(rotation?.identityDhKey).toHaveLength(0);
    const newId = server.bundles.get(bob.deviceId)?.signedPreKey?.keyId;
    expect(newId).toBeDefined();
    expect(newId).not.toBe(oldId);
    // Maintaining again the same day changes nothing.
    await bob.codec.maintainPreKeys(undefined);
    expect(server.published).toHaveLength(publishes + 1);

    // A message sealed before the rotation opens; a new setup uses the new key.
    expect(await openAt(bob, soon)).toBe("before 0");
    const [first] = senders;
    if (first === undefined) throw new Error("no sender");
    await first.codec.resetSession(bob.deviceId);
    const fresh = await sealFor(first, "after the rotation");
    expect(signedPreKeyIdOf(fresh, bob)).toBe(newId);
    expect(await openAt(bob, fresh)).toBe("after the rotation");

    // Within the grace period the old key is still there.
    clock.advance(SIGNED_PREKEY_GRACE_MS - DAY);
    await bob.codec.maintainPreKeys(undefined);
    expect(await openAt(bob, late)).toBe("before 1");

    // After it, the old private key is gone: a setup that names it cannot open (and heals, as any bad setup).
    clock.advance(DAY);
    await bob.codec.maintainPreKeys(undefined);
    expect(signedPreKeyIdOf(tooLate, bob)).toBe(oldId);
    expect(await openAt(bob, tooLate)).toBe("undecryptable: bad-setup");
  });

  it("follows a configured interval and grace period", async () => {
    const server = new FakeServer();
    const clock = handClock(5_000);
    const policy = { rotationMs: 60_000, graceMs: 90_000 };
    const bob = await device(server, BOB, "d" + "b".repeat(26), undefined, { clock, signedPreKeys: policy });
    const alice = await device(server, ALICE, "d" + "a".repeat(26), undefined, { clock });
    const inFlight = await sealFor(alice, "sealed before two rotations");
    const ids = [server.bundles.get(bob.deviceId)?.signedPreKey?.keyId];
    for (let i = 0; i < 2; i += 1) {
      clock.advance(policy.rotationMs);
      await bob.codec.maintainPreKeys(undefined);
      ids.push(server.bundles.get(bob.deviceId)?.signedPreKey?.keyId);
    }
    expect(new Set(ids).size).toBe(3);
    // The first key was replaced 60 s ago: within its 90 s of grace.
    expect(await openAt(bob, inFlight)).toBe("sealed before two rotations");
  });

  it("keeps the newest key and every key replaced less than the grace period ago, at most a bounded number", () => {
    const keys = [0, 10, 20, 30].map((createdAtMs) => ({ createdAtMs }));
    // Replaced at 10, 20 and 30; at 35 with 20 of grace, the one replaced at 10 has expired.
    expect(keptSignedPreKeys(keys, 35, 20).map((k) => k.createdAtMs)).toEqual([10, 20, 30]);
    expect(keptSignedPreKeys(keys, 1_000, 20).map((k) => k.createdAtMs)).toEqual([30]);
    expect(keptSignedPreKeys([], 0, 20)).toEqual([]);
    const many = Array.from({ length: MAX_SIGNED_PREKEYS + 5 }, (_, i) => ({ createdAtMs: i }));
    expect(keptSignedPreKeys(many, MAX_SIGNED_PREKEYS + 5, 1_000)).toEqual(many.slice(-MAX_SIGNED_PREKEYS));
  });
});
