/**
 * Where a pairwise session lives in the E2E state: one encrypted, versioned
 * record per peer device (`session/<deviceId>`), and the routing header every
 * envelope is bound to.
 *
 * Invariants:
 * - A record is written only with the version it was read at (optimistic:
 *   the store refuses a write another process overtook).
 * - An envelope opens only for the chat, message id and device pair it was
 *   sealed for (the routing header is its associated data).
 */
import type { E2eRecord, E2eWrite } from "../store/client-store.ts";
import { openRecord, sealRecord } from "./e2e-records.ts";
import type { SessionRecord } from "./e2e-session.ts";

const encoder = new TextEncoder();

export const sessionKey = (deviceId: string): string => `session/${deviceId}`;

export function decodeSession(storageKey: Uint8Array, deviceId: string, stored: E2eRecord): SessionRecord {
  return openRecord<SessionRecord>(storageKey, sessionKey(deviceId), stored.value);
}

export function sessionWrite(
  storageKey: Uint8Array,
  deviceId: string,
  version: number,
  record: SessionRecord,
): E2eWrite {
  const key = sessionKey(deviceId);
  return { key, expectedVersion: version, value: sealRecord(storageKey, key, record) };
}

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
