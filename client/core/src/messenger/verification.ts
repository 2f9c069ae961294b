/**
 * Verifying a contact: the safety number of this user and another (from
 * both users' device identity keys), each of their devices with a short
 * fingerprint and its trust, and whether a key changed since first seen —
 * which blocks sending to them until this user accepts the keys shown.
 * `describeVerification` is the pure part.
 *
 * Invariant: `accept` trusts exactly the keys fetched in the same call, so
 * the number shown is the number of the keys accepted.
 */
import { hex } from "@scure/base";
import { sha256, ErrorCode, RemessengerError } from "@remessenger/protocol";
import type { DeviceTrust, KnownUser } from "../e2e/device-directory.ts";
import { type SafetyNumber, safetyNumber } from "../e2e/safety-number.ts";
import type { MessengerSession } from "./messenger-session.ts";

/** "changed": a device key changed and is not accepted (sending is blocked); "accepted": it was just now. */
export type VerificationStatus = "trusted" | "accepted" | "changed";

export interface VerifiedDevice {
  deviceId: string;
  /** 16 hex digits of the identity key's SHA-256, in groups of 4. */
  fingerprint: string;
  trust: DeviceTrust;
  /** The key trusted before, for a changed one. */
  previousFingerprint: string | undefined;
}

export interface Verification {
  userId: string;
  safetyNumber: SafetyNumber;
  status: VerificationStatus;
  /** The user checked the safety number at some point. */
  isVerified: boolean;
  devices: VerifiedDevice[];
}

/** A short, stable name for a key: 16 hex digits of its SHA-256. */
export function keyFingerprint(key: Uint8Array): string {
  return hex.encode(sha256(key).subarray(0, 8)).replace(/(.{4})(?=.)/g, "$1 ");
}

/** The verification of `them` as seen by `me`; `wasAccepted` when a change was accepted in this call. */
export function describeVerification(me: KnownUser, them: KnownUser, wasAccepted: boolean): Verification {
  const number = safetyNumber(
    { userId: me.userId, identityKeys: me.devices.map((d) => d.identityKey) },
    { userId: them.userId, identityKeys: them.devices.map((d) => d.identityKey) },
  );
  const isChanged = them.devices.some((d) => d.trust === "changed");
  return {
    userId: them.userId,
    safetyNumber: number,
    status: isChanged ? "changed" : wasAccepted ? "accepted" : "trusted",
    isVerified: them.isVerified,
    devices: them.devices.map((d) => ({
      deviceId: d.deviceId,
      fingerprint: keyFingerprint(d.identityKey),
      trust: d.trust,
      previousFingerprint: d.previousKey === undefined ? undefined : keyFingerprint(d.previousKey),
    })),
  };
}

/** Thrown when the server describes no devices of a user. */
export class UnknownUserError extends RemessengerError {
  override readonly name = "UnknownUserError";
  readonly userId: string;
  constructor(userId: string) {
    super(ErrorCode.ERROR_CODE_NOT_FOUND, `cannot fetch the devices of ${userId}`);
    this.userId = userId;
  }
}

/** Fetches both users' devices and computes the verification; with `accept`, trusts their current keys first. */
export async function verifyUser(
  session: Pick<MessengerSession, "knownUser" | "acceptIdentity">,
  me: string,
  userId: string,
  accept: boolean,
): Promise<Verification> {
  let them = await session.knownUser(userId, true);
  const mine = await session.knownUser(me, true);
  if (them === undefined || mine === undefined) throw new UnknownUserError(userId);
  const wasChanged = them.devices.some((d) => d.trust === "changed");
  if (accept) them = await session.acceptIdentity(them.userId);
  return describeVerification(mine, them, accept && wasChanged);
}
