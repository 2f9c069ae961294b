/**
 * What this device knows of other users' devices: their identity keys and
 * whether each is trusted, fetched from the server when stale and kept in
 * the E2E state (one encrypted record per user).
 *
 * Invariants:
 * - Trust on first use for a first contact; after that, a device key that
 *   changes, or a new device not approved (link signature) by a device
 *   already trusted, marks the user "changed", and sealing for that user
 *   throws IdentityChangedError until the user accepts it (acceptIdentity).
 * - A user's list is fetched at most once per run and then per
 *   DEVICE_LIST_TTL_MS, unless a caller asks for a refresh; offline, the
 *   stored list is used.
 */
import {
  type Chat,
  ErrorCode,
  RemessengerError,
  type User,
  equalBytes,
  linkApprovalProof,
} from "@remessenger/protocol";
import type { Ed25519Provider } from "../crypto/device-signer.ts";
import type { Clock } from "../runtime/clock.ts";
import type { ClientStore } from "../store/client-store.ts";
import { openRecord, sealRecord } from "./e2e-records.ts";
import { IdentityChangedError, NeedsServerError } from "./pairwise-errors.ts";

/** A user's device list is fetched again after this long. */
export const DEVICE_LIST_TTL_MS = 60_000;

const userKey = (userId: string): string => `devices/${userId}`;

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

/** A device to seal for, with the identity key this device trusts for it. */
export interface Recipient {
  userId: string;
  deviceId: string;
  identityKey: Uint8Array;
}

/** Where device lists and chats are looked up. */
export interface DirectoryServer {
  getUser(userId: string): Promise<User>;
  getChat(chatId: string): Promise<Chat>;
}

export interface DeviceDirectoryOptions {
  userId: string;
  deviceId: string;
  store: ClientStore;
  storageKey: Uint8Array;
  ed25519: Ed25519Provider;
  clock: Clock;
}

export class DeviceDirectory {
  private readonly options: DeviceDirectoryOptions;
  private server: DirectoryServer | undefined;
  /** Users whose device list was fetched since this directory was made (each once per run, then per TTL). */
  private readonly fetchedThisRun = new Set<string>();

  constructor(options: DeviceDirectoryOptions) {
    this.options = options;
  }

  /** Where to fetch device lists; unset (offline), the stored ones are used. */
  setServer(server: DirectoryServer | undefined): void {
    this.server = server;
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

  /** The chat's devices to seal for (all but this one); `isRefresh` fetches the device lists anew. */
  async recipients(chatId: string, isRefresh = false): Promise<Recipient[]> {
    const { store } = this.options;
    let members = (await store.getChat(chatId))?.memberUserIds;
    if (members === undefined) {
      if (this.server === undefined) throw new NeedsServerError(`the server is needed to look up chat ${chatId}`);
      const chat = await this.server.getChat(chatId);
      members = chat.memberUserIds;
      await store.saveChats([
        { chatId, kind: chat.kind === 2 ? "group" : "direct", title: chat.title, memberUserIds: [...members] },
      ]);
    }
    return this.recipientsOf(members, isRefresh);
  }

  /** The devices of `members` (all but this one), with their trusted keys; throws on a changed identity. */
  async recipientsOf(members: readonly string[], isRefresh = false): Promise<Recipient[]> {
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

  async knownDevice(userId: string, deviceId: string): Promise<KnownDevice | undefined> {
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
          entry = equalBytes(old.identityKey, device.identityKey)
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
}
