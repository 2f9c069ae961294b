/**
 * Device authentication without passwords: a device proves it holds its Ed25519
 * key by signing a fresh single-use challenge; the server then issues a session
 * token (HMAC of device id and expiry under the server secret) for stateless
 * transports. The server keeps only public keys.
 *
 * Invariants: a challenge verifies at most once and only before it expires;
 * the challenge book is bounded, so no client can grow it without limit.
 */
import { createHmac, createPublicKey, timingSafeEqual, verify } from "node:crypto";
import { base64urlnopad } from "@scure/base";
import {
  RemessengerError,
  CHALLENGE_NONCE_BYTES,
  CHALLENGE_TTL_MS,
  ED25519_PUBLIC_KEY_BYTES,
  ED25519_SIGNATURE_BYTES,
  ErrorCode,
  type GetChallengeResponse,
} from "@remessenger/protocol";
import type { Clock } from "./clock.ts";

/** Outstanding challenges kept at once; the oldest go first beyond this. */
export const MAX_OUTSTANDING_CHALLENGES = 100_000;
export const SESSION_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;

export class ChallengeBook {
  /** nonce (base64url) → expiry; Map keeps insertion order, so the first entry is the oldest. */
  private readonly outstanding = new Map<string, number>();
  private readonly clock: Clock;
  private readonly random: (n: number) => Uint8Array;

  constructor(clock: Clock, random: (n: number) => Uint8Array) {
    this.clock = clock;
    this.random = random;
  }

  issue(): GetChallengeResponse {
    const nonce = this.random(CHALLENGE_NONCE_BYTES);
    const expiresAtMs = this.clock.nowMs() + CHALLENGE_TTL_MS;
    this.outstanding.set(base64urlnopad.encode(nonce), expiresAtMs);
    for (const key of this.outstanding.keys()) {
      if (this.outstanding.size <= MAX_OUTSTANDING_CHALLENGES) break;
      this.outstanding.delete(key);
    }
    return { nonce, expiresAtMs };
  }

  /** Uses up the challenge; throws UNAUTHENTICATED if it is unknown, used or expired. */
  consume(nonce: Uint8Array): void {
    const key = base64urlnopad.encode(nonce);
    const expiresAtMs = this.outstanding.get(key);
    this.outstanding.delete(key);
    if (expiresAtMs === undefined || expiresAtMs < this.clock.nowMs()) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "unknown or expired challenge; get a new one");
    }
  }

  get size(): number {
    return this.outstanding.size;
  }
}

/** Throws UNAUTHENTICATED unless `signature` is `publicKey`'s Ed25519 signature of `data`. */
export function verifyDeviceSignature(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): void {
  if (publicKey.length !== ED25519_PUBLIC_KEY_BYTES || signature.length !== ED25519_SIGNATURE_BYTES) {
    throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "malformed identity key or signature");
  }
  let isValid: boolean;
  try {
    const key = createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: base64urlnopad.encode(publicKey) },
      format: "jwk",
    });
    isValid = verify(null, data, key, signature);
  } catch (cause) {
    throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "identity key is not a valid Ed25519 key", {
      cause,
    });
  }
  if (!isValid) throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "signature does not verify");
}

/** Session tokens: `deviceId.expiryMs.mac`, checked without any lookup. */
export class SessionTokens {
  private readonly secret: Uint8Array;
  private readonly clock: Clock;

  constructor(secret: Uint8Array, clock: Clock) {
    this.secret = secret;
    this.clock = clock;
  }

  issue(deviceId: string): string {
    return this.issueSession(deviceId).sessionToken;
  }

  /** A token and when it stops being accepted, as the auth responses carry them. */
  issueSession(deviceId: string): { sessionToken: string; sessionExpiresAtMs: number } {
    const expiresAtMs = this.clock.nowMs() + SESSION_TOKEN_TTL_MS;
    return {
      sessionToken: `${deviceId}.${expiresAtMs}.${this.mac(deviceId, expiresAtMs)}`,
      sessionExpiresAtMs: expiresAtMs,
    };
  }

  /** The device id the token was issued to; throws UNAUTHENTICATED when forged or expired. */
  verify(token: string): string {
    const [deviceId, expiry, mac, ...rest] = token.split(".");
    const expiresAtMs = Number(expiry);
    if (deviceId === undefined || mac === undefined || rest.length > 0 || !Number.isSafeInteger(expiresAtMs)) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "malformed session token");
    }
    const expected = new TextEncoder().encode(this.mac(deviceId, expiresAtMs));
    const given = new TextEncoder().encode(mac);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "invalid session token");
    }
    if (expiresAtMs < this.clock.nowMs()) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "session token expired; log in again");
    }
    return deviceId;
  }

  private mac(deviceId: string, expiresAtMs: number): string {
    const hmac = createHmac("sha256", this.secret).update(
      `remessenger/v1/session\u0000${deviceId}\u0000${expiresAtMs}`,
    );
    return base64urlnopad.encode(hmac.digest());
  }
}
