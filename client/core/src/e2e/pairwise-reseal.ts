/**
 * The pure rules of a reseal after DEVICES_CHANGED: which payloads of a
 * sealed message go, which devices get one added, and the request that
 * results, every kept payload byte for byte the same.
 */
import { type DevicePayload, ErrorCode, RemessengerError, type SendMessageRequest } from "@remessenger/protocol";

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
