/**
 * Records for the messenger's unit tests: received messages and outbox rows
 * as the store keeps them, with only what a test names differing.
 */
import { textContent } from "../session/payload-codec.ts";
import type { OutboxEntry, ReceivedMessage } from "../store/client-store.ts";

export const ME = "u-me";
export const ALICE = "u-alice";

export function received(chatId: string, seq: number, overrides: Partial<ReceivedMessage> = {}): ReceivedMessage {
  return {
    chatId,
    seq,
    messageId: `${chatId}-${seq}`.padStart(32, "0"),
    senderUserId: ALICE,
    senderDeviceId: "d-alice",
    serverTimeMs: 1_000 + seq,
    content: textContent(`hello ${seq}`, 1_000 + seq),
    ...overrides,
  };
}

export function outboxRow(chatId: string, messageId: string, overrides: Partial<OutboxEntry> = {}): OutboxEntry {
  return {
    messageId,
    chatId,
    position: 1,
    content: textContent(`mine ${messageId}`, 5_000),
    createdAtMs: 5_000,
    state: "queued",
    seq: undefined,
    problem: undefined,
    sealed: undefined,
    ...overrides,
  };
}
