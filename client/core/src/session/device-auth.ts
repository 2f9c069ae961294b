/**
 * Proving the device's identity on a connection: register a new device, or
 * log in a known one, by signing the server's challenge (wire/auth-proof.ts
 * builds the signed bytes). The hello's challenge is used first, saving a
 * round trip; if the server refuses it (expired, used) a fresh one is asked
 * for once. A second refusal is final: the device or its key is not known.
 */
import {
  linkProof,
  loginProof,
  registerProof,
  isError,
  ErrorCode,
  type Hello,
  type LinkDeviceResponse,
  type LoginResponse,
  type RegisterResponse,
  type TunnelInfo,
} from "@remessenger/protocol";
import type { DeviceSigner } from "../crypto/device-signer.ts";
import { CLOSE_NORMAL, type TransportFactory } from "../connection/transport.ts";
import { type Clock, deadline, systemClock } from "../runtime/clock.ts";
import { Connection, type RequestOptions } from "./connection.ts";
import { type Logger, silentLogger } from "../runtime/logger.ts";

export async function loginDevice(
  connection: Connection,
  hello: Hello,
  signer: DeviceSigner,
  deviceId: string,
  options: RequestOptions,
): Promise<LoginResponse> {
  return withFreshChallengeOnce(connection, hello, options, async (nonce) =>
    connection.request(
      "login",
      { deviceId, nonce, signature: await signer.sign(loginProof(nonce, deviceId)) },
      options,
    ),
  );
}

export async function registerDevice(
  connection: Connection,
  hello: Hello,
  signer: DeviceSigner,
  displayName: string,
  options: RequestOptions,
): Promise<RegisterResponse> {
  const identityKey = signer.publicKey;
  return withFreshChallengeOnce(connection, hello, options, async (nonce) =>
    connection.request(
      "register",
      { displayName, identityKey, nonce, signature: await signer.sign(registerProof(nonce, identityKey, displayName)) },
      options,
    ),
  );
}

async function withFreshChallengeOnce<T>(
  connection: Connection,
  hello: Hello,
  options: RequestOptions,
  attempt: (nonce: Uint8Array) => Promise<T>,
): Promise<T> {
  const helloNonce = hello.challenge?.nonce;
  if (helloNonce !== undefined && helloNonce.length > 0) {
    try {
      return await attempt(helloNonce);
    } catch (error) {
      if (!isError(error, ErrorCode.ERROR_CODE_UNAUTHENTICATED)) throw error;
      // Maybe only the challenge was stale: one more try with a fresh one below.
    }
  }
  const { nonce } = await connection.request("getChallenge", {}, options);
  return attempt(nonce);
}

export interface RegisterNewDeviceOptions {
  transports: TransportFactory;
  signer: DeviceSigner;
  displayName: string;
  timeoutMs: number;
  signal?: AbortSignal;
  clock?: Clock;
  logger?: Logger;
}

/**
 * Registers a new user with this device on a short-lived connection of its own
 * (before a profile exists there is no session to ride on). One deadline
 * covers connecting and registering.
 */
/** What registering tells a new device: the response, and the server's DNS tunnel if it has one. */
export interface RegisteredDevice extends RegisterResponse {
  tunnel: TunnelInfo | undefined;
}

export async function registerNewDevice(options: RegisterNewDeviceOptions): Promise<RegisteredDevice> {
  return onShortConnection(options, "registering", async (connection, hello, requestOptions) => {
    const response = await registerDevice(connection, hello, options.signer, options.displayName, requestOptions);
    return { ...response, tunnel: hello.tunnel };
  });
}

/**
 * Runs `body` on a connection of its own, opened and used within
 * `options.timeoutMs` in all, and closed afterwards whatever happened.
 */
async function onShortConnection<T>(
  options: { transports: TransportFactory; timeoutMs: number; signal?: AbortSignal; clock?: Clock; logger?: Logger },
  what: string,
  body: (
    connection: Connection,
    hello: Hello,
    requestOptions: { timeoutMs: number; signal: AbortSignal },
  ) => Promise<T>,
): Promise<T> {
  const clock = options.clock ?? systemClock;
  const limit = deadline(clock, options.timeoutMs, what, options.signal);
  try {
    const { connection, hello } = await Connection.open(
      {
        transports: options.transports,
        clock,
        logger: options.logger ?? silentLogger,
        onPush: () => undefined,
        onClose: () => undefined,
      },
      { signal: limit.signal, timeoutMs: options.timeoutMs },
    );
    try {
      return await body(connection, hello, { timeoutMs: options.timeoutMs, signal: limit.signal });
    } finally {
      connection.close(CLOSE_NORMAL, `done ${what}`);
    }
  } finally {
    limit.dispose();
  }
}

/** An existing device's approval for a new device to join its user (see LinkDeviceRequest). */
export interface LinkApproval {
  userId: string;
  approvedByDeviceId: string;
  expiresAtMs: number;
  signature: Uint8Array;
}

export interface LinkNewDeviceOptions {
  transports: TransportFactory;
  /** The new device's key (the one the approval names). */
  signer: DeviceSigner;
  approval: LinkApproval;
  timeoutMs: number;
  signal?: AbortSignal;
  clock?: Clock;
  logger?: Logger;
}

/** Adds this new device to an existing user on a short-lived connection of its own; also what the hello said of the DNS tunnel. */
export async function linkNewDevice(
  options: LinkNewDeviceOptions,
): Promise<LinkDeviceResponse & { tunnel: TunnelInfo | undefined }> {
  return onShortConnection(options, "linking", async (connection, hello, requestOptions) => {
    const { approval, signer } = options;
    const response = await withFreshChallengeOnce(connection, hello, requestOptions, async (nonce) =>
      connection.request(
        "linkDevice",
        {
          userId: approval.userId,
          identityKey: signer.publicKey,
          nonce,
          signature: await signer.sign(linkProof(nonce, signer.publicKey, approval.userId)),
          approvedByDeviceId: approval.approvedByDeviceId,
          approvalExpiresAtMs: approval.expiresAtMs,
          approvalSignature: approval.signature,
        },
        requestOptions,
      ),
    );
    return { ...response, tunnel: hello.tunnel };
  });
}
