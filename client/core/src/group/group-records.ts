/**
 * The group layer's records in the E2E state, encrypted and versioned: per
 * group its verified chain and epoch history, per epoch this device's sender
 * key (own) and whom it reached (sent), and the sender keys other member
 * devices handed this one (from). Reads of a group record are cached while
 * its stored version stays (records are never changed in place), and the
 * signers of this device's sender keys are kept in memory, both bounded.
 */
import type { DeviceSigner, Ed25519Provider } from "../crypto/device-signer.ts";
import { type GroupState, equalBytes } from "@remessenger/protocol";
import { openRecord, sealRecord } from "../e2e/e2e-records.ts";
import type { ClientStore, E2eRecord, E2eWrite } from "../store/client-store.ts";
import type { GroupHistory } from "./epoch-window.ts";
import { type OwnSenderKey, type ReceivedSenderKey, createOwnSenderKey } from "./sender-key.ts";

/** Signers of sender keys kept in memory (one per group and epoch this device sends in). */
const MAX_SIGNERS = 64;
/** Parsed group records kept in memory. */
const MAX_CACHED_GROUPS = 64;

export interface GroupRecord {
  state: GroupState;
  history: GroupHistory;
  lastOperationSeq: number;
  /** Hashes of the operations applied, by seq (bounded like the history): catches a server that shows two. */
  recent: Array<{ seq: number; hash: Uint8Array }>;
  /** Sender keys of epochs up to this one were deleted (their windows are over). */
  prunedThroughEpoch: number;
}

export interface OwnRecord {
  key: OwnSenderKey;
  /** Where the chain stood when the epoch's first message was sealed; dropped once that position was handed out. */
  origin: { iteration: number; chainKey: Uint8Array } | undefined;
}

export interface SentRecord {
  /** Member devices this device's key of the epoch reached. */
  deviceIds: string[];
  /** The epoch's first distribution went out to every member device. */
  isComplete: boolean;
  /**
   * The latest chain position handed out: a device reached later reads from
   * there on, so a queued message sealed before it is sealed again.
   */
  readableFrom: number;
}

export interface FromRecord {
  userId: string;
  key: ReceivedSenderKey;
}

export interface Versioned<T> {
  record: T;
  version: number;
}

export const groupKey = (chatId: string): string => `group/${chatId}`;
export const keysPrefix = (chatId: string): string => `group/${chatId}/`;
export const ownKey = (chatId: string, epoch: number): string => `group/${chatId}/own/${epoch}`;
export const sentKey = (chatId: string, epoch: number): string => `group/${chatId}/sent/${epoch}`;
export const fromKey = (chatId: string, deviceId: string, epoch: number): string =>
  `group/${chatId}/from/${deviceId}/${epoch}`;

export interface GroupRecordsOptions {
  store: ClientStore;
  /** 32 bytes: encrypts every record at rest. */
  storageKey: Uint8Array;
  ed25519: Ed25519Provider;
}

export class GroupRecords {
  private readonly options: GroupRecordsOptions;
  private readonly signers = new Map<string, DeviceSigner>();
  /** Group records as last read, by chat: reused while their stored version stays. */
  private readonly cache = new Map<string, Versioned<GroupRecord>>();

  constructor(options: GroupRecordsOptions) {
    this.options = options;
  }

  /** Drops the signers of `chatId`'s epochs through `throughEpoch` (their keys were deleted). */
  forgetSigners(chatId: string, throughEpoch: number): void {
    for (const key of this.signers.keys()) {
      const epoch = Number(key.slice(key.lastIndexOf("/") + 1));
      if (key.startsWith(`${chatId}/`) && epoch <= throughEpoch) this.signers.delete(key);
    }
  }

  async ownKey(chatId: string, epoch: number): Promise<Versioned<OwnRecord>> {
    const key = ownKey(chatId, epoch);
    const stored = (await this.options.store.readE2e([key])).get(key);
    if (stored !== undefined) return { record: this.decode<OwnRecord>(key, stored), version: stored.version };
    // A new key: stored with the first message sealed with it (or not at all).
    const made = await createOwnSenderKey(this.options.ed25519, chatId, epoch);
    this.remember(made.key, made.signer);
    return {
      record: { key: made.key, origin: { iteration: made.key.iteration, chainKey: made.key.chainKey } },
      version: 0,
    };
  }

  async signerFor(key: OwnSenderKey): Promise<DeviceSigner> {
    const name = `${key.chatId}/${key.epoch}`;
    const cached = this.signers.get(name);
    if (cached !== undefined && equalBytes(cached.publicKey, key.signingKey)) return cached;
    const signer = await this.options.ed25519.signerFromSeed(key.signingSeed);
    this.remember(key, signer);
    return signer;
  }

  private remember(key: OwnSenderKey, signer: DeviceSigner): void {
    const name = `${key.chatId}/${key.epoch}`;
    this.signers.delete(name);
    if (this.signers.size >= MAX_SIGNERS) {
      const oldest = this.signers.keys().next();
      if (oldest.done !== true) this.signers.delete(oldest.value);
    }
    this.signers.set(name, signer);
  }

  /** The group's record; decrypted and parsed only when its version moved (a large group's is large). */
  async readGroup(chatId: string): Promise<Versioned<GroupRecord> | undefined> {
    const key = groupKey(chatId);
    const stored = (await this.options.store.readE2e([key])).get(key);
    if (stored === undefined) return undefined;
    const cached = this.cache.get(chatId);
    if (cached?.version === stored.version) return cached;
    const read = { record: this.decode<GroupRecord>(key, stored), version: stored.version };
    this.cache.delete(chatId);
    if (this.cache.size >= MAX_CACHED_GROUPS) {
      const oldest = this.cache.keys().next();
      if (oldest.done !== true) this.cache.delete(oldest.value);
    }
    this.cache.set(chatId, read);
    return read;
  }

  async readSent(chatId: string, epoch: number): Promise<Versioned<SentRecord> | undefined> {
    const key = sentKey(chatId, epoch);
    const stored = (await this.options.store.readE2e([key])).get(key);
    return stored === undefined ? undefined : { record: this.decode<SentRecord>(key, stored), version: stored.version };
  }

  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the key names what the record holds
  decode<T>(key: string, stored: E2eRecord): T {
    return openRecord<T>(this.options.storageKey, key, stored.value);
  }

  write(key: string, expectedVersion: number, value: unknown): E2eWrite {
    return { key, expectedVersion, value: sealRecord(this.options.storageKey, key, value) };
  }
}
