/**
 * Pairwise end-to-end sessions: the one place where what the user wrote
 * becomes ciphertext for each of a chat's devices and back. No plaintext
 * path exists.
 *
 * Sealing (when a message enters the outbox, or at its first send when
 * sessions must be fetched first): the Content is padded and encrypted once
 * per recipient device, every device of the other members and this user's
 * other devices, with Double Ratchet sessions started from prekey bundles
 * (PQXDH). The result is a SendMessageRequest whose device_payloads hold the
 * envelopes, stored with the state writes in one transaction (the
 * `...IntoOutbox`/`sealQueued`/`resealForDevices` methods, e2e/outbox-commits.ts),
 * and every retry sends those same bytes.
 *
 * Opening (pairwise-open.ts): the device's own envelope is decrypted with the
 * session of the sending device (or a new one from a prekey message);
 * failures come back as a reason, never as a silent drop.
 *
 * Trust is the DeviceDirectory's (trust on first use, approvals, changed
 * identities); this device's prekeys are the PreKeyUpkeep's. All state is
 * read and written through the ClientStore as encrypted, versioned records
 * (e2e/e2e-records.ts). Every method that reads and writes that state takes
 * the E2E lock (shared with GroupSessions) itself; `seal`, `open` and the
 * other unlocked steps are for the E2E layer's own locked work and for tests.
 */
import {
  Content,
  type DevicePayload,
  ErrorCode,
  type Message,
  type PreKeyBundle,
  type PreKeyStock,
  RemessengerError,
  SendMessageRequest,
  type X25519Provider,
  equalBytes,
  messageIdFromHex,
} from "@remessenger/protocol";
import type { Ed25519Provider } from "../crypto/device-signer.ts";
import type { MlKemProvider } from "../crypto/ml-kem.ts";
import type { Clock } from "../runtime/clock.ts";
import type { ClientStore, E2eRecord, E2eWrite, NewOutboxMessage, OutboxEntry } from "../store/client-store.ts";
import { type DirectoryServer, DeviceDirectory, type KnownUser, type Recipient } from "./device-directory.ts";
import type { E2eLock } from "./e2e-lock.ts";
import { EMPTY_RECORD, type SessionRecord, sealEnvelope, startSession } from "./e2e-session.ts";
import { commitNew, commitQueued, commitReplacement } from "./outbox-commits.ts";
import { type Opened, openPairwise } from "./pairwise-open.ts";
import { IdentityChangedError, NeedsServerError } from "./pairwise-errors.ts";
import { decodeSession, routingHeader, sessionKey, sessionWrite } from "./pairwise-records.ts";
import { type DeviceChange, applyReseal, planReseal } from "./pairwise-reseal.ts";
import { type PreKeyServer, PreKeyUpkeep, type SignedPreKeyPolicy } from "./prekey-upkeep.ts";
import { type DeviceIdentity, type SetupDeps, setupDepsFor } from "./session-setup.ts";

/** What pairwise sessions ask the server (the session's ServerApi answers). */
export interface E2eServer extends DirectoryServer, PreKeyServer {
  getPreKeyBundles(userId: string, deviceIds: readonly string[]): Promise<PreKeyBundle[]>;
}

export interface PairwiseSessionsOptions {
  userId: string;
  deviceId: string;
  identity: DeviceIdentity;
  /** 32 bytes: encrypts every E2E record at rest. */
  storageKey: Uint8Array;
  store: ClientStore;
  /** The one lock of this device's E2E state, shared with GroupSessions. */
  lock: E2eLock;
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

export type { Opened } from "./pairwise-open.ts";

export interface Sealed {
  /** The encoded SendMessageRequest. */
  sealed: Uint8Array;
  writes: E2eWrite[];
}

export class PairwiseSessions {
  private readonly options: PairwiseSessionsOptions;
  private readonly directory: DeviceDirectory;
  private readonly preKeys: PreKeyUpkeep;
  private server: E2eServer | undefined;

  constructor(options: PairwiseSessionsOptions) {
    this.options = options;
    this.directory = new DeviceDirectory(options);
    this.preKeys = new PreKeyUpkeep(options);
  }

  /** Where to fetch device lists and bundles; unset (offline) sealing needs cached sessions. */
  setServer(server: E2eServer | undefined): void {
    this.server = server;
    this.directory.setServer(server);
    this.preKeys.setServer(server);
  }

  /**
   * Seals a new message of a direct chat and stores it in the outbox with its
   * ratchet steps (unsealed when it cannot be sealed now; see
   * e2e/outbox-commits.ts). Throws IdentityChangedError.
   */
  sealIntoOutbox(message: NewOutboxMessage): Promise<OutboxEntry> {
    const { lock, store } = this.options;
    return commitNew(lock, store, message, () => this.seal(message.chatId, message.messageId, message.content));
  }

  /** Seals a queued direct message that has no sealed bytes yet, once; resolves with the bytes to send. */
  sealQueued(entry: OutboxEntry): Promise<Uint8Array> {
    const { lock, store } = this.options;
    return commitQueued(lock, store, entry, () => this.seal(entry.chatId, entry.messageId, entry.content));
  }

  /** `reseal` of a queued message's `previous` bytes, stored in their place; resolves with the bytes to send. */
  resealForDevices(entry: OutboxEntry, previous: Uint8Array, change: DeviceChange): Promise<Uint8Array> {
    const { lock, store } = this.options;
    return commitReplacement(lock, store, entry, previous, () => this.reseal(previous, entry.content, change));
  }

  /** Seals `content` for every other device in the chat. Throws NeedsServerError, IdentityChangedError. */
  async seal(chatId: string, messageIdHex: string, content: Content): Promise<Sealed> {
    const messageId = messageIdFromHex(messageIdHex);
    const targets = await this.directory.recipients(chatId);
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
    const targets = await this.directory.recipients(request.chatId, true);
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
        if (!equalBytes(bundle.identityKey, target.identityKey)) {
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
    const targets = (await this.directory.recipientsOf(memberUserIds)).filter((t) => isWanted(t.deviceId));
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
    return (await this.directory.recipientsOf(memberUserIds)).map((r) => ({ userId: r.userId, deviceId: r.deviceId }));
  }

  /** The identity key this device knows for a user's device (fetched anew once when unknown). */
  async identityKeyOf(userId: string, deviceId: string): Promise<Uint8Array | undefined> {
    return (await this.directory.knownDevice(userId, deviceId))?.identityKey;
  }

  /** Opens this device's envelope of a received message (pairwise-open.ts); its writes go with the message. */
  open(message: Message): Promise<Opened> {
    const { deviceId, storageKey, store, identity, clock } = this.options;
    const deps = { deviceId, storageKey, store, identity, clock, setup: this.setupDeps() };
    return openPairwise({ ...deps, preKeys: this.preKeys, directory: this.directory }, message);
  }

  /**
   * Forgets the current session with a device (it failed), so the next
   * message to it starts a new one from a fresh prekey.
   */
  resetSession(deviceId: string): Promise<void> {
    return this.options.lock.run(async () => {
      const key = sessionKey(deviceId);
      const stored = (await this.options.store.readE2e([key])).get(key);
      if (stored === undefined) return;
      const record = this.decodeSession(deviceId, stored);
      const previous = record.current === undefined ? record.previous : [record.current, ...record.previous];
      const write = this.sessionWrite(deviceId, stored.version, { current: undefined, previous });
      await this.options.store.writeE2e([write]);
    });
  }

  /** See PreKeyUpkeep.maintainPreKeys: cheap when nothing is due; call it at every login and now and then. */
  maintainPreKeys(stock: PreKeyStock | undefined): Promise<void> {
    return this.options.lock.run(() => this.preKeys.maintainPreKeys(stock));
  }

  /** What we know of a user's devices (fetched when stale and the server is reachable). */
  knownUser(userId: string, isRefresh = false): Promise<KnownUser | undefined> {
    return this.options.lock.run(() => this.directory.knownUser(userId, isRefresh));
  }

  /** Trusts the user's current device keys (after the user compared the safety number). */
  acceptIdentity(userId: string): Promise<KnownUser> {
    return this.options.lock.run(() => this.directory.acceptIdentity(userId));
  }

  private requireServer(what: string): E2eServer {
    if (this.server === undefined) throw new NeedsServerError(`the server is needed to ${what}`);
    return this.server;
  }

  private setupDeps(): SetupDeps {
    return setupDepsFor(this.options);
  }

  private decodeSession(deviceId: string, stored: E2eRecord): SessionRecord {
    return decodeSession(this.options.storageKey, deviceId, stored);
  }

  private sessionWrite(deviceId: string, version: number, record: SessionRecord): E2eWrite {
    return sessionWrite(this.options.storageKey, deviceId, version, record);
  }
}
