/**
 * This device's prekeys: the private halves kept in the E2E state (one
 * record, PREKEYS_KEY) and the public ones published to the server. A full
 * bundle when the server has none, a refill when its stock runs low, a new
 * signed prekey on rotation; replaced signed prekeys are kept through their
 * grace period, so prekey messages sealed from an older bundle still open.
 *
 * Invariants:
 * - The private halves are stored before the server can hand out the
 *   public ones; a one-time prekey's private half goes with the message
 *   that used it (PairwiseSessions.open), so it never sets up two sessions.
 * - A full bundle counts as published only once the server took it.
 */
import {
  type PreKeyMessage,
  type PreKeyStock,
  type PublishPreKeysRequest,
  type X25519KeyPair,
  type X25519Provider,
  pqPreKeyProof,
  signedPreKeyProof,
} from "@remessenger/protocol";
import { mlKemGenerateKeyPair } from "../crypto/ml-kem.ts";
import type { Clock } from "../runtime/clock.ts";
import type { ClientStore, E2eRecord } from "../store/client-store.ts";
import { openRecord, sealRecord } from "./e2e-records.ts";
import { NeedsServerError } from "./pairwise-errors.ts";
import { type DeviceIdentity, SetupError } from "./session-setup.ts";

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

/** The E2E state record that holds this device's prekeys. */
export const PREKEYS_KEY = "prekeys";

/** This device's prekeys as stored (private halves included). */
export interface LocalPreKeys {
  nextId: number;
  signed: Array<{ id: number; publicKey: Uint8Array; privateKey: Uint8Array; createdAtMs: number }>;
  oneTime: Array<{ id: number; publicKey: Uint8Array; privateKey: Uint8Array }>;
  pq: { id: number; publicKey: Uint8Array; secretKey: Uint8Array } | undefined;
  isPublished: boolean;
}

/** Where prekeys are published. */
export interface PreKeyServer {
  publishPreKeys(request: PublishPreKeysRequest): Promise<PreKeyStock>;
}

export interface PreKeyUpkeepOptions {
  store: ClientStore;
  storageKey: Uint8Array;
  identity: DeviceIdentity;
  x25519: X25519Provider;
  clock: Clock;
  onKeyMade?: (kind: string, pair: { publicKey: Uint8Array; privateKey: Uint8Array }) => void;
  signedPreKeys?: Partial<SignedPreKeyPolicy>;
}

export class PreKeyUpkeep {
  private readonly options: PreKeyUpkeepOptions;
  private server: PreKeyServer | undefined;

  constructor(options: PreKeyUpkeepOptions) {
    this.options = options;
  }

  setServer(server: PreKeyServer | undefined): void {
    this.server = server;
  }

  /**
   * Publishes a bundle when the server has none, one-time prekeys when its
   * stock is low, and a new signed prekey when the current one is older than
   * the rotation interval; forgets signed prekeys replaced longer ago than
   * the grace period. Cheap when nothing is due: call it at every login and
   * now and then while connected.
   */
  async maintainPreKeys(stock: PreKeyStock | undefined): Promise<void> {
    const server = this.server;
    if (server === undefined) throw new NeedsServerError("the server is needed to publish prekeys");
    const stored = (await this.options.store.readE2e([PREKEYS_KEY])).get(PREKEYS_KEY);
    let local = stored === undefined ? undefined : this.decode(stored);
    const { x25519, identity, clock } = this.options;
    const nowMs = clock.nowMs();
    const policy = this.policy();
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
      const current = this.decode(after);
      await this.options.store.writeE2e([
        {
          key: PREKEYS_KEY,
          expectedVersion: after.version,
          value: sealRecord(this.options.storageKey, PREKEYS_KEY, { ...current, isPublished: true }),
        },
      ]);
    }
  }

  decode(stored: E2eRecord): LocalPreKeys {
    return openRecord<LocalPreKeys>(this.options.storageKey, PREKEYS_KEY, stored.value);
  }

  private policy(): SignedPreKeyPolicy {
    return {
      rotationMs: this.options.signedPreKeys?.rotationMs ?? SIGNED_PREKEY_ROTATION_MS,
      graceMs: this.options.signedPreKeys?.graceMs ?? SIGNED_PREKEY_GRACE_MS,
    };
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

/** The private keys a prekey message names, from this device's prekeys; SetupError when one is gone. */
export function responderKeys(local: LocalPreKeys | undefined, message: PreKeyMessage) {
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
