/**
 * What every store contract suite shares: the fixture an adapter hands over,
 * a fresh fixture per test (disposed after it), and the records the suites
 * write. Imports vitest, like the suites: checked by the root tsconfig, not
 * the core's (which leaves out *contract*.ts).
 */
import { afterEach } from "vitest";
import type { ClientStore } from "./client-store.ts";
import type { E2eWrite } from "./e2e-state-store.ts";
import type { NewOutboxMessage } from "./outbox-store.ts";
import type { ReceivedMessage } from "./timeline-store.ts";

export interface StoreFixture {
  store: ClientStore;
  /** Opens the same storage again (a restart); undefined when it does not persist. */
  reopen: (() => Promise<ClientStore>) | undefined;
  /** A second, concurrent handle on the same storage (another process or tab); undefined when impossible. */
  openSibling: (() => Promise<ClientStore>) | undefined;
  dispose(): Promise<void>;
}

export type OpenStoreFixture = () => Promise<StoreFixture>;

/** Call inside a describe: a fresh fixture per call, every one disposed after its test. */
export function useStoreFixtures(open: OpenStoreFixture): () => Promise<StoreFixture> {
  let fixtures: StoreFixture[] = [];
  afterEach(async () => {
    for (const fixture of fixtures) await fixture.dispose();
    fixtures = [];
  });
  return async () => {
    const fixture = await open();
    fixtures.push(fixture);
    return fixture;
  };
}

export const CHAT_A = "caaaaaaaaaaaaaaaaaaaaaaaaaa";
export const CHAT_B = "cbbbbbbbbbbbbbbbbbbbbbbbbbb";
export const CHAT_C = "ccccccccccccccccccccccccccc";
export const OTHER_USER = "uaaaaaaaaaaaaaaaaaaaaaaaaaa";

export const blob = (n: number): Uint8Array => new Uint8Array(8).fill(n);
export const put = (key: string, expectedVersion: number, n: number): E2eWrite => ({
  key,
  expectedVersion,
  value: blob(n),
});

let counter = 0;
export function message(chatId: string, text = "hi"): NewOutboxMessage {
  counter += 1;
  return {
    messageId: counter.toString(16).padStart(32, "0"),
    chatId,
    content: { body: { $case: "text", value: text }, composedAtMs: 1000 + counter },
    createdAtMs: 2000 + counter,
  };
}

/** `text` null: a message whose payload could not be read. */
export function received(chatId: string, seq: number, text: string | null = `m${seq}`): ReceivedMessage {
  return {
    chatId,
    seq,
    messageId: (seq + 0xabc000).toString(16).padStart(32, "0"),
    senderUserId: OTHER_USER,
    senderDeviceId: "daaaaaaaaaaaaaaaaaaaaaaaaaa",
    serverTimeMs: 5000 + seq,
    content: text === null ? undefined : { body: { $case: "text", value: text }, composedAtMs: 7 },
  };
}
