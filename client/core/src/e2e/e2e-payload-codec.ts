/**
 * The end-to-end payload codec: the one place where what the user wrote
 * becomes ciphertext for the server and back. No plaintext path exists.
 *
 * Sealing (at the moment a message enters the outbox, or at its first send
 * when sessions must be fetched first): the Content is padded and encrypted
 * once per recipient device — every device of the other members and this
 * user's other devices — with pairwise Double Ratchet sessions started from
 * prekey bundles (PQXDH). The result is a SendMessageRequest whose
 * device_payloads hold the envelopes; the caller stores it with the state
 * writes in one transaction, and every retry sends those same bytes.
 *
 * Opening: the device's own envelope is decrypted with the session of the
 * sending device (or a new one from a prekey message); failures come back as
 * a reason, never as a silent drop.
 *
 * Trust: the identity keys of each contact's devices are remembered (trust on
 * first use). A device key that changes, or a new device not approved (link
 * signature) by a device we trust, marks the user "changed", and sealing for
 * that user throws IdentityChangedError until the user accepts it.
 *
 * All state is read and written through the ClientStore as encrypted,
 * versioned records (e2e/e2e-records.ts); work is serialized per codec.
 */
import type { Ed25519Provider } from "../crypto/device-signer.ts";
import {
  EMPTY_RECORD,
  OpenError,
  type OpenFailure,
  type SessionRecord,
  openEnvelope,
  sealEnvelope,
  startSession,
} from "./e2e-session.ts";
import { openRecord, sealRecord } from "./e2e-records.ts";
import { type MlKemProvider, mlKemGenerateKeyPair, nobleMlKem } from "../crypto/ml-kem.ts";
import { type DeviceIdentity, type SetupDeps, SetupError } from "./session-setup.ts";
import {
  type X25519KeyPair,
  type X25519Provider,
  type Chat,
  type DevicePayload,
  type Message,
  type PreKeyBundle,
  type PreKeyMessage,
  type PreKeyStock,
  type PublishPreKeysRequest,
  type User,
  linkApprovalProof,
  RemessengerError,
  messageIdFromHex,
  pqPreKeyProof,
  signedPreKeyProof,
  Content,
  ErrorCode,
  SendMessageRequest,
} from "@remessenger/protocol";
import type { ClientStore, E2eRecord, E2eWrite } from "../store/client-store.ts";
import type { Clock } from "../runtime/clock.ts";

/** One-time prekeys published per refill. */
export const PREKEY_BATCH = 50;
const DAY_MS = 24 * 60 * 60 * 1000;
/** A device replaces its signed prekey this often (default). */
export const SIGNED_PREKEY_ROTATION_MS = 7 * DAY_MS;
/**
 * A replaced signed prekey's private half is kept this long after its
 * replacement (default): a prekey message sealed from the old bundle (an
 * outbox that waited offline, a queue on the server) still opens.
 */
export const SIGNED_PREKEY_GRACE_MS = 30 * DAY_MS;
/** Most signed prekeys kept at once, whatever the policy (the newest stay). */
export const MAX_SIGNED_PREKEYS = 8;

/** When a device rotates its signed prekey, and how long it keeps the ones it replaced. */
export interface SignedPreKeyPolicy {
  rotationMs: number;
  graceMs: number;
}
/** A user's device list is fetched again after this long. */
export const DEVICE_LIST_TTL_MS = 60_000;

const encoder = new TextEncoder();

/** What the codec asks the server (the session answers through its connection). */
export interface E2eServer {
  getUser(userId: string): Promise<User>;
  getChat(chatId: string): Promise<Chat>;
  getPreKeyBundles(userId: string, deviceIds: readonly string[]): Promise<PreKeyBundle[]>;
  publishPreKeys(request: PublishPreKeysRequest): Promise<PreKeyStock>;
}

export interface E2eCodecOptions {
  userId: string;
  deviceId: string;
  identity: DeviceIdentity;
  /** 32 bytes: encrypts every E2E record at rest. */
  storageKey: Uint8Array;
  store: ClientStore;
  x25519: X25519Provider;
  ed25519: Ed25519Provider;
  /** ML-KEM-768 (the portable one when omitted). */
  mlKem?: MlKemProvider;
  clock: Clock;
  /** Told about every ratchet and prekey key pair made here (SSLKEYLOGFILE-style test hook). */
  onKeyMade?: (kind: string, pair: { publicKey: Uint8Array; privateKey: Uint8Array }) => void;
  /** Signed prekey rotation (SIGNED_PREKEY_ROTATION_MS, SIGNED_PREKEY_GRACE_MS when omitted). */
  signedPreKeys?: Partial<SignedPreKeyPolicy>;
}

/** Sending to this user is blocked until its changed identity is accepted. */
export class IdentityChangedError extends RemessengerError {
  readonly userId: string;
  constructor(userId: string, detail: string) {
    super(
      ErrorCode.ERROR_CODE_PERMISSION_DENIED,
      `the identity of ${userId} changed (${detail}); check it with "remessenger verify ${userId}" and accept it with --accept`,
    );
    this.userId = userId;
  }
}

/** A message could not be sealed now because the server is needed (sessions to fetch). */
export class NeedsServerError extends Error {
  override readonly name = "NeedsServerError";
}

export interface Sealed {
  /** The encoded SendMessageRequest. */
  sealed: Uint8Array;
  writes: E2eWrite[];
}

export type Opened =
  | { kind: "content"; content: Content; writes: E2eWrite[] }
  | {
      kind: "undecryptable";
      reason: OpenFailure | "not-for-this-device" | "identity-mismatch";
      detail: string;
      canHeal: boolean;
    };

interface LocalPreKeys {
  nextId: number;
  signed: Array<{ id: number; publicKey: Uint8Array; privateKey: Uint8Array; createdAtMs: number }>;
  oneTime: Array<{ id: number; publicKey: Uint8Array; privateKey: Uint8Array }>;
  pq: { id: number; publicKey: Uint8Array; secretKey: Uint8Array } | undefined;
  isPublished: boolean;
}

export type DeviceTrust = "trusted" | "changed";

export interface KnownDevice {
  deviceId: string;
  identityKey: Uint8Array;
  trust: DeviceTrust;
  /** For "changed": the key we trusted before (undefined for a new, unapproved device). */
  previousKey: Uint8Array | undefined;
}

export interface KnownUser {
  userId: string;
  devices: KnownDevice[];
  /** The user checked the safety number (verify) at some point. */
  isVerified: boolean;
  fetchedAtMs: number;
}

interface Recipient {
  userId: string;
  deviceId: string;
  identityKey: Uint8Array;
}

/** What the server said about a send's devices (DEVICES_CHANGED). */
export interface DeviceChange {
  missingDeviceIds: readonly string[];
  staleDeviceIds: readonly string[];
}

/**
 * Which payloads a reseal drops and which devices it seals for: stale ones
 * present in the message go; missing ones not yet covered are added, and
 * each must be a recipient we know after the refresh (else a retryable
 * UNAVAILABLE: the device list has not caught up). Pure.
 */
export function planReseal(
  payloadDeviceIds: readonly string[],
  recipientDeviceIds: readonly string[],
  change: DeviceChange,
): { drop: string[]; add: string[] } {
  const present = new Set(payloadDeviceIds);
  const drop = change.staleDeviceIds.filter((id) => present.has(id));
  const add = [...new Set(change.missingDeviceIds)].filter((id) => !present.has(id));
  const unknown = add.filter((id) => !recipientDeviceIds.includes(id));
  if (unknown.length > 0) {
    throw new RemessengerError(
      ErrorCode.ERROR_CODE_UNAVAILABLE,
      `the server lists device ${unknown.join(", ")} that this device cannot see yet`,
      { retryAfterMs: 1_000 },
    );
  }
  if (drop.length === 0 && add.length === 0) {
    throw new RemessengerError(
      ErrorCode.ERROR_CODE_UNAVAILABLE,
      "the server reports changed devices, but the message already matches them",
      { retryAfterMs: 1_000 },
    );
  }
  return { drop, add };
}

/** The request with the `drop` payloads removed and `added` appended; every kept payload is the same object. Pure. */
export function applyReseal(
  request: SendMessageRequest,
  drop: readonly string[],
  added: readonly DevicePayload[],
): SendMessageRequest {
  const gone = new Set(drop);
  return { ...request, devicePayloads: [...request.devicePayloads.filter((p) => !gone.has(p.deviceId)), ...added] };
}

const sessionKey = (deviceId: string): string => `session/${deviceId}`;
const userKey = (userId: string): string => `devices/${userId}`;
const PREKEYS_KEY = "prekeys";

/** The routing header every envelope is bound to (associated data). */
export function routingHeader(chatId: string, messageId: Uint8Array, fromDevice: string, toDevice: string): Uint8Array {
  const head = encoder.encode(`remessenger/v1/route\u0000${chatId}\u0000`);
  const tail = encoder.encode(`\u0000${fromDevice}\u0000${toDevice}`);
  const out = new Uint8Array(head.length + messageId.length + tail.length);
  out.set(head);
  out.set(messageId, head.length);
  out.set(tail, head.length + messageId.length);
  return out;
}

export class E2eCodec {
  private readonly options: E2eCodecOptions;
  private server: E2eServer | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** Users whose device list this codec fetched since it was made (each is fetched once per run, then per TTL). */
  private readonly fetchedThisRun = new Set<string>();

  constructor(options: E2eCodecOptions) {
    this.options = options;
  }

  /** Where to fetch device lists and bundles; unset (offline) sealing needs cached sessions. */
  setServer(server: E2eServer | undefined): void {
    this.server = server;
  }

  /** Runs `work` after every earlier E2E step of this codec finished: state is read-modified-written one at a time. */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Seals `content` for every other device in the chat. Throws NeedsServerError, IdentityChangedError. */
  async seal(chatId: string, messageIdHex: string, content: Content): Promise<Sealed> {
    const messageId = messageIdFromHex(messageIdHex);
    const targets = await this.recipients(chatId);
    const { devicePayloads, writes } = await this.sealFor(targets, chatId, messageId, content);
    if (devicePayloads.length === 0) {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_UNAVAILABLE,
        `no device in ${chatId} can receive encrypted messages yet`,
      );
    }
    const request: SendMessageRequest = { chatId, messageId, payload: new Uint8Array(0), devicePayloads };
    return { sealed: SendMessageRequest.encode(request).finish(), writes };
  }

  /**
   * Seals a sealed message again for a changed set of recipient devices (the
   * server answered DEVICES_CHANGED): the device lists are fetched anew, the
   * payloads of stale devices are dropped, each missing device gets one
   * (through its session, or a new one from its prekey bundle), and every
   * other payload stays byte for byte — no ratchet moves twice for one
   * message. Throws IdentityChangedError for a new device nobody we trust
   * approved, and a retryable UNAVAILABLE when a missing device cannot be
   * sealed for yet.
   */
  async reseal(sealed: Uint8Array, content: Content, change: DeviceChange): Promise<Sealed> {
    const request = SendMessageRequest.decode(sealed);
    const targets = await this.recipients(request.chatId, true);
    const plan = planReseal(
      request.devicePayloads.map((p) => p.deviceId),
      targets.map((t) => t.deviceId),
      change,
    );
    const { devicePayloads, writes } = await this.sealFor(
      targets.filter((t) => plan.add.includes(t.deviceId)),
      request.chatId,
      request.messageId,
      content,
    );
    const unsealed = plan.add.filter((id) => !devicePayloads.some((p) => p.deviceId === id));
    if (unsealed.length > 0) {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_UNAVAILABLE,
        `cannot encrypt for device ${unsealed.join(", ")} yet (no prekeys)`,
        { retryAfterMs: 1_000 },
      );
    }
    const next = applyReseal(request, plan.drop, devicePayloads);
    return { sealed: SendMessageRequest.encode(next).finish(), writes };
  }

  /** One payload per target that has (or can start) a session; the ratchet writes that go with them. */
  private async sealFor(
    targets: readonly Recipient[],
    chatId: string,
    messageId: Uint8Array,
    content: Content,
  ): Promise<{ devicePayloads: DevicePayload[]; writes: E2eWrite[] }> {
    const { deviceId } = this.options;
    const plaintext = Content.encode(content).finish();
    const records = await this.options.store.readE2e(targets.map((t) => sessionKey(t.deviceId)));
    const writes: E2eWrite[] = [];
    const devicePayloads: DevicePayload[] = [];
    const missing = new Map<string, string[]>();
    const sessions = new Map<string, { record: SessionRecord; version: number }>();
    for (const target of targets) {
      const stored = records.get(sessionKey(target.deviceId));
      const record = stored === undefined ? EMPTY_RECORD : this.decodeSession(target.deviceId, stored);
      sessions.set(target.deviceId, { record, version: stored?.version ?? 0 });
      if (record.current === undefined)
        missing.set(target.userId, [...(missing.get(target.userId) ?? []), target.deviceId]);
    }
    for (const [userId, deviceIds] of missing) {
      const server = this.requireServer(`start a session with ${userId}`);
      const bundles = await server.getPreKeyBundles(userId, deviceIds);
      for (const bundle of bundles) {
        const target = targets.find((t) => t.deviceId === bundle.deviceId);
        const entry = sessions.get(bundle.deviceId);
        if (target === undefined || entry === undefined) continue;
        if (!equal(bundle.identityKey, target.identityKey)) {
          throw new IdentityChangedError(userId, `device ${bundle.deviceId} offers a key we do not know`);
        }
        entry.record = await startSession(
          this.setupDeps(),
          this.options.identity,
          entry.record,
          bundle,
          this.options.clock.nowMs(),
        );
      }
    }
    for (const target of targets) {
      const entry = sessions.get(target.deviceId);
      if (entry?.record.current === undefined) continue; // the device published no bundle: it cannot read us
      const sealed = sealEnvelope(
        this.options.identity,
        entry.record,
        plaintext,
        routingHeader(chatId, messageId, deviceId, target.deviceId),
      );
      devicePayloads.push({ deviceId: target.deviceId, ciphertext: sealed.envelope });
      writes.push(this.sessionWrite(target.deviceId, entry.version, sealed.record));
    }
    return { devicePayloads, writes };
  }

  /**
   * Seals `content` pairwise for the devices of `memberUserIds` (all but this
   * one, and of those only the ones `isWanted` accepts): a group's control
   * messages (sender key distributions, session resets), which the server
   * hands each device its own payload of. `deviceIds` are the devices sealed
   * for (a device without prekeys cannot be). Throws NeedsServerError,
   * IdentityChangedError.
   */
  async sealForMembers(
    chatId: string,
    messageIdHex: string,
    content: Content,
    memberUserIds: readonly string[],
    isWanted: (deviceId: string) => boolean = () => true,
  ): Promise<Sealed & { deviceIds: string[] }> {
    const messageId = messageIdFromHex(messageIdHex);
    const targets = (await this.recipientsOf(memberUserIds)).filter((t) => isWanted(t.deviceId));
    const { devicePayloads, writes } = await this.sealFor(targets, chatId, messageId, content);
    const request: SendMessageRequest = { chatId, messageId, payload: new Uint8Array(0), devicePayloads };
    return {
      sealed: SendMessageRequest.encode(request).finish(),
      writes,
      deviceIds: devicePayloads.map((p) => p.deviceId),
    };
  }

  /** The devices of `memberUserIds` other than this one (device lists fetched when stale). Throws IdentityChangedError. */
  async memberDevices(memberUserIds: readonly string[]): Promise<Array<{ userId: string; deviceId: string }>> {
    return (await this.recipientsOf(memberUserIds)).map((r) => ({ userId: r.userId, deviceId: r.deviceId }));
  }

  /** The identity key this device knows for a user's device (fetched anew once when unknown). */
  async identityKeyOf(userId: string, deviceId: string): Promise<Uint8Array | undefined> {
    return (await this.knownDevice(userId, deviceId))?.identityKey;
  }

  /** Opens this device's envelope of a received message. */
  async open(message: Message): Promise<Opened> {
    const { deviceId, store } = this.options;
    const mine = message.devicePayloads.find((p) => p.deviceId === deviceId);
    if (mine === undefined) {
      return {
        kind: "undecryptable",
        reason: "not-for-this-device",
        detail: "the sender encrypted nothing for this device",
        canHeal: true,
      };
    }
    const sender = message.senderDeviceId;
    const keys = [sessionKey(sender), PREKEYS_KEY];
    const stored = await store.readE2e(keys);
    const sessionRecord = stored.get(sessionKey(sender));
    const prekeysRecord = stored.get(PREKEYS_KEY);
    const record = sessionRecord === undefined ? EMPTY_RECORD : this.decodeSession(sender, sessionRecord);
    const local = prekeysRecord === undefined ? undefined : this.decodePreKeys(prekeysRecord);
    let opened;
    try {
      opened = await openEnvelope(
        { ...this.setupDeps(), nowMs: this.options.clock.nowMs() },
        this.options.identity,
        record,
        mine.ciphertext,
        routingHeader(message.chatId, message.messageId, sender, deviceId),
        (prekeyMessage) => Promise.resolve(responderKeys(local, prekeyMessage)),
      );
    } catch (error) {
      if (!(error instanceof OpenError)) throw error;
      return { kind: "undecryptable", reason: error.reason, detail: error.message, canHeal: error.reason !== "replay" };
    }
    const known = await this.knownDevice(message.senderUserId, sender);
    if (known === undefined || !equal(known.identityKey, opened.peerIdentityKey)) {
      return {
        kind: "undecryptable",
        reason: "identity-mismatch",
        detail: `the message is signed by a key the server does not list for device ${sender}`,
        canHeal: false,
      };
    }
    let content: Content;
    try {
      content = Content.decode(opened.plaintext);
    } catch {
      return {
        kind: "undecryptable",
        reason: "undecodable",
        detail: "the decrypted content is not a Content",
        canHeal: false,
      };
    }
    const writes = [this.sessionWrite(sender, sessionRecord?.version ?? 0, opened.record)];
    const { oneTimePreKeyId } = opened.consumed;
    if (oneTimePreKeyId !== undefined && local !== undefined && prekeysRecord !== undefined) {
      // The one-time private key goes with the message that used it: it can never set up a second session.
      const next: LocalPreKeys = { ...local, oneTime: local.oneTime.filter((k) => k.id !== oneTimePreKeyId) };
      writes.push({
        key: PREKEYS_KEY,
        expectedVersion: prekeysRecord.version,
        value: sealRecord(this.options.storageKey, PREKEYS_KEY, next),
      });
    }
    return { kind: "content", content, writes };
  }

  /**
   * Forgets the current session with a device (it failed), so the next
   * message to it starts a new one from a fresh prekey.
   */
  async resetSession(deviceId: string): Promise<void> {
    const key = sessionKey(deviceId);
    const stored = (await this.options.store.readE2e([key])).get(key);
    if (stored === undefined) return;
    const record = this.decodeSession(deviceId, stored);
    const previous = record.current === undefined ? record.previous : [record.current, ...record.previous];
    await this.options.store.writeE2e([this.sessionWrite(deviceId, stored.version, { current: undefined, previous })]);
  }

  /**
   * Publishes a bundle when the server has none, one-time prekeys when its
   * stock is low, and a new signed prekey when the current one is older than
   * the rotation interval; forgets signed prekeys replaced longer ago than
   * the grace period. Cheap when nothing is due: call it at every login and
   * now and then while connected.
   */
  async maintainPreKeys(stock: PreKeyStock | undefined): Promise<void> {
    const server = this.requireServer("publish prekeys");
    const stored = (await this.options.store.readE2e([PREKEYS_KEY])).get(PREKEYS_KEY);
    let local = stored === undefined ? undefined : this.decodePreKeys(stored);
    const { x25519, identity, clock } = this.options;
    const nowMs = clock.nowMs();
    const policy = this.signedPreKeyPolicy();
    // Without a stock (not asked), only what this device never published, or a rotation, goes out.
    const needsBundle = local === undefined || !local.isPublished || stock?.hasBundle === false;
    const isLow = stock !== undefined && stock.oneTimePreKeys < stock.lowWater;
    const newest = local?.signed.at(-1);
    const isRotationDue = !needsBundle && (newest === undefined || nowMs - newest.createdAtMs >= policy.rotationMs);
    if (!needsBundle && !isLow && !isRotationDue) {
      const kept = local === undefined ? [] : keptSignedPreKeys(local.signed, nowMs, policy.graceMs);
      if (local !== undefined && stored !== undefined && kept.length < local.signed.length) {
        // Only the expired private keys go: prekey messages that name them now fail (and heal).
        await this.options.store.writeE2e([
          {
            key: PREKEYS_KEY,
            expectedVersion: stored.version,
            value: sealRecord(this.options.storageKey, PREKEYS_KEY, { ...local, signed: kept }),
          },
        ]);
      }
      return;
    }
    let nextId = local?.nextId ?? 1;
    const request: PublishPreKeysRequest = {
      identityDhKey: new Uint8Array(0),
      identityDhSignature: new Uint8Array(0),
      signedPreKey: undefined,
      oneTimePreKeys: [],
      lastResortPqPreKey: undefined,
      oneTimePqPreKeys: [],
    };
    let signed = local?.signed ?? [];
    let pq = local?.pq;
    if (needsBundle || isRotationDue) {
      const spk = await x25519.generateKeyPair();
      this.options.onKeyMade?.("signed-prekey", spk);
      const spkId = nextId++;
      signed = [...signed, { id: spkId, ...spk, createdAtMs: nowMs }];
      request.signedPreKey = {
        keyId: spkId,
        publicKey: spk.publicKey,
        signature: await identity.signer.sign(signedPreKeyProof(spkId, spk.publicKey)),
      };
    }
    // The replaced ones stay for sessions in flight, until their grace period is over.
    signed = keptSignedPreKeys(signed, nowMs, policy.graceMs);
    if (needsBundle) {
      const pqPair = mlKemGenerateKeyPair();
      this.options.onKeyMade?.("pq-prekey", { publicKey: pqPair.publicKey, privateKey: pqPair.secretKey });
      pq = { id: nextId++, publicKey: pqPair.publicKey, secretKey: pqPair.secretKey };
      request.identityDhKey = identity.dh.publicKey;
      request.identityDhSignature = identity.dhSignature;
      request.lastResortPqPreKey = {
        keyId: pq.id,
        publicKey: pq.publicKey,
        signature: await identity.signer.sign(pqPreKeyProof(pq.id, pq.publicKey)),
      };
    }
    const fresh: LocalPreKeys["oneTime"] = [];
    const count = needsBundle ? PREKEY_BATCH : isLow ? Math.max(0, PREKEY_BATCH - stock.oneTimePreKeys) : 0;
    for (let i = 0; i < count; i += 1) {
      const pair = await x25519.generateKeyPair();
      this.options.onKeyMade?.("one-time-prekey", pair);
      fresh.push({ id: nextId++, ...pair });
    }
    request.oneTimePreKeys = fresh.map((k) => ({ keyId: k.id, publicKey: k.publicKey }));
    // A full bundle counts as published only once the server took it; a failed refill or
    // rotation leaves the published bundle in place (its signed prekey is still kept).
    const isPublished = !needsBundle && local?.isPublished === true;
    local = { nextId, signed, oneTime: [...(local?.oneTime ?? []), ...fresh].slice(-1000), pq, isPublished };
    // The private halves are stored before the server can hand out the public ones.
    await this.options.store.writeE2e([
      {
        key: PREKEYS_KEY,
        expectedVersion: stored?.version ?? 0,
        value: sealRecord(this.options.storageKey, PREKEYS_KEY, local),
      },
    ]);
    await server.publishPreKeys(request);
    const after = (await this.options.store.readE2e([PREKEYS_KEY])).get(PREKEYS_KEY);
    if (after !== undefined) {
      const current = this.decodePreKeys(after);
      await this.options.store.writeE2e([
        {
          key: PREKEYS_KEY,
          expectedVersion: after.version,
          value: sealRecord(this.options.storageKey, PREKEYS_KEY, { ...current, isPublished: true }),
        },
      ]);
    }
  }

  /** What we know of a user's devices (fetched when stale and the server is reachable). */
  async knownUser(userId: string, isRefresh = false): Promise<KnownUser | undefined> {
    const key = userKey(userId);
    const stored = (await this.options.store.readE2e([key])).get(key);
    let known = stored === undefined ? undefined : openRecord<KnownUser>(this.options.storageKey, key, stored.value);
    const isStale =
      known === undefined ||
      isRefresh ||
      !this.fetchedThisRun.has(userId) ||
      this.options.clock.nowMs() - known.fetchedAtMs > DEVICE_LIST_TTL_MS;
    if (isStale && this.server !== undefined) {
      const user = await this.server.getUser(userId);
      this.fetchedThisRun.add(userId);
      known = await this.merge(userId, known, user);
      await this.options.store.writeE2e([
        { key, expectedVersion: stored?.version ?? 0, value: sealRecord(this.options.storageKey, key, known) },
      ]);
    }
    return known;
  }

  /** Trusts the user's current device keys (after the user compared the safety number). */
  async acceptIdentity(userId: string): Promise<KnownUser> {
    const known = await this.knownUser(userId, true);
    if (known === undefined)
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, `cannot fetch ${userId}'s devices`);
    const key = userKey(userId);
    const stored = (await this.options.store.readE2e([key])).get(key);
    const accepted: KnownUser = {
      ...known,
      isVerified: true,
      devices: known.devices.map((d) => ({ ...d, trust: "trusted", previousKey: undefined })),
    };
    await this.options.store.writeE2e([
      { key, expectedVersion: stored?.version ?? 0, value: sealRecord(this.options.storageKey, key, accepted) },
    ]);
    return accepted;
  }

  // ── internals ────────────────────────────────────────────────────────

  /** The chat's devices to seal for (all but this one); `isRefresh` fetches the device lists anew. */
  private async recipients(chatId: string, isRefresh = false): Promise<Recipient[]> {
    const { store } = this.options;
    let members = (await store.getChat(chatId))?.memberUserIds;
    if (members === undefined) {
      const chat = await this.requireServer(`look up chat ${chatId}`).getChat(chatId);
      members = chat.memberUserIds;
      await store.saveChats([
        { chatId, kind: chat.kind === 2 ? "group" : "direct", title: chat.title, memberUserIds: [...members] },
      ]);
    }
    return this.recipientsOf(members, isRefresh);
  }

  /** The devices of `members` (all but this one), with their trusted keys; throws on a changed identity. */
  private async recipientsOf(members: readonly string[], isRefresh = false): Promise<Recipient[]> {
    const { userId, deviceId } = this.options;
    const out = [];
    for (const member of members) {
      const known = await this.knownUser(member, isRefresh);
      if (known === undefined) throw new NeedsServerError(`the devices of ${member} are not known yet`);
      const changed = known.devices.filter((d) => d.trust === "changed");
      if (changed.length > 0) {
        throw new IdentityChangedError(member, changed.map((d) => `device ${d.deviceId}`).join(", "));
      }
      for (const device of known.devices) {
        if (member === userId && device.deviceId === deviceId) continue;
        out.push({ userId: member, deviceId: device.deviceId, identityKey: device.identityKey });
      }
    }
    return out;
  }

  private async knownDevice(userId: string, deviceId: string): Promise<KnownDevice | undefined> {
    let known = await this.knownUser(userId);
    let device = known?.devices.find((d) => d.deviceId === deviceId);
    if (device === undefined && this.server !== undefined) {
      known = await this.knownUser(userId, true);
      device = known?.devices.find((d) => d.deviceId === deviceId);
    }
    return device;
  }

  /** TOFU for a first contact; after that a new device needs an approval by a trusted one. */
  private async merge(userId: string, known: KnownUser | undefined, user: User): Promise<KnownUser> {
    const isFirstContact = known === undefined || known.devices.length === 0;
    const before = new Map((known?.devices ?? []).map((d) => [d.deviceId, d]));
    const devices: KnownDevice[] = [];
    const trusted = (): KnownDevice[] => [...before.values(), ...devices].filter((d) => d.trust === "trusted");
    const pending = [...user.devices];
    // Approvals may chain (a linked device approving the next): settle in rounds.
    for (let round = 0; round < user.devices.length + 1 && pending.length > 0; round += 1) {
      for (let i = pending.length - 1; i >= 0; i -= 1) {
        const device = pending[i];
        if (device === undefined) continue;
        const old = before.get(device.deviceId);
        let entry: KnownDevice | undefined;
        if (old !== undefined) {
          entry = equal(old.identityKey, device.identityKey)
            ? old
            : {
                deviceId: device.deviceId,
                identityKey: device.identityKey,
                trust: "changed",
                previousKey: old.identityKey,
              };
        } else if (isFirstContact || (userId === this.options.userId && device.deviceId === this.options.deviceId)) {
          entry = {
            deviceId: device.deviceId,
            identityKey: device.identityKey,
            trust: "trusted",
            previousKey: undefined,
          };
        } else {
          const approver = trusted().find((d) => d.deviceId === device.approvedByDeviceId);
          if (approver !== undefined) {
            const isValid = await this.options.ed25519.verify(
              approver.identityKey,
              linkApprovalProof(userId, device.identityKey, device.approvalExpiresAtMs),
              device.approvalSignature,
            );
            entry = {
              deviceId: device.deviceId,
              identityKey: device.identityKey,
              trust: isValid ? "trusted" : "changed",
              previousKey: undefined,
            };
          } else if (round === user.devices.length) {
            entry = {
              deviceId: device.deviceId,
              identityKey: device.identityKey,
              trust: "changed",
              previousKey: undefined,
            };
          }
        }
        if (entry !== undefined) {
          devices.push(entry);
          pending.splice(i, 1);
        }
      }
    }
    return { userId, devices, isVerified: known?.isVerified ?? false, fetchedAtMs: this.options.clock.nowMs() };
  }

  private signedPreKeyPolicy(): SignedPreKeyPolicy {
    return {
      rotationMs: this.options.signedPreKeys?.rotationMs ?? SIGNED_PREKEY_ROTATION_MS,
      graceMs: this.options.signedPreKeys?.graceMs ?? SIGNED_PREKEY_GRACE_MS,
    };
  }

  private requireServer(what: string): E2eServer {
    if (this.server === undefined) throw new NeedsServerError(`the server is needed to ${what}`);
    return this.server;
  }

  private setupDeps(): SetupDeps {
    const { x25519, ed25519, onKeyMade } = this.options;
    const mlKem = this.options.mlKem ?? nobleMlKem;
    if (onKeyMade === undefined) return { x25519, ed25519, mlKem };
    // Every key pair a session makes goes through here: the setup's ephemeral key, then ratchet keys.
    return {
      ed25519,
      mlKem,
      generateEphemeral: async () => {
        const pair = await x25519.generateKeyPair();
        onKeyMade("setup-ephemeral", pair);
        return pair;
      },
      x25519: {
        ...x25519,
        name: x25519.name,
        generateKeyPair: async (): Promise<X25519KeyPair> => {
          const pair = await x25519.generateKeyPair();
          onKeyMade("ratchet", pair);
          return pair;
        },
      },
    };
  }

  private decodeSession(deviceId: string, stored: E2eRecord): SessionRecord {
    return openRecord<SessionRecord>(this.options.storageKey, sessionKey(deviceId), stored.value);
  }

  private decodePreKeys(stored: E2eRecord): LocalPreKeys {
    return openRecord<LocalPreKeys>(this.options.storageKey, PREKEYS_KEY, stored.value);
  }

  private sessionWrite(deviceId: string, version: number, record: SessionRecord): E2eWrite {
    const key = sessionKey(deviceId);
    return { key, expectedVersion: version, value: sealRecord(this.options.storageKey, key, record) };
  }
}

/**
 * The signed prekeys still to keep (oldest first): the newest, and each one
 * whose successor was made less than `graceMs` ago — at most
 * MAX_SIGNED_PREKEYS. Pure.
 */
export function keptSignedPreKeys<K extends { createdAtMs: number }>(
  signed: readonly K[],
  nowMs: number,
  graceMs: number,
): K[] {
  const kept = signed.filter((_, i) => {
    const successor = signed[i + 1];
    return successor === undefined || nowMs - successor.createdAtMs < graceMs;
  });
  return kept.slice(-MAX_SIGNED_PREKEYS);
}

function responderKeys(local: LocalPreKeys | undefined, message: PreKeyMessage) {
  if (local === undefined) throw new SetupError("this device has no prekeys (its state was lost)");
  const signed = local.signed.find((k) => k.id === message.signedPreKeyId);
  if (signed === undefined) throw new SetupError(`signed prekey ${message.signedPreKeyId} is gone`);
  let oneTimePreKey: X25519KeyPair | undefined;
  if (message.hasOneTimePreKey) {
    const found = local.oneTime.find((k) => k.id === message.oneTimePreKeyId);
    if (found === undefined) throw new SetupError(`one-time prekey ${message.oneTimePreKeyId} was used already`);
    oneTimePreKey = { publicKey: found.publicKey, privateKey: found.privateKey };
  }
  if (local.pq?.id !== message.pqPreKeyId) throw new SetupError(`PQ prekey ${message.pqPreKeyId} is gone`);
  return {
    signedPreKey: { publicKey: signed.publicKey, privateKey: signed.privateKey },
    oneTimePreKey,
    pqSecretKey: local.pq.secretKey,
  };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
