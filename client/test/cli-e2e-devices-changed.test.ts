/**
 * A recipient links a new device in the middle of a conversation, while the
 * sender is a long-running client whose list of the recipient's devices is
 * still within its refresh interval (as an app's would be). The sender seals
 * its next message for the devices it knows; the real server refuses the send
 * (DEVICES_CHANGED, nothing stored); the sender seals for the new device only
 * and sends the same message id again. Every device gets every message once,
 * in order, and the payloads of the devices that did not change are the bytes
 * sealed first: no ratchet stepped twice for one message.
 *
 * The server and every other device are real processes (server harness, CLI);
 * the sender is a ClientSession in this process, opened on a CLI profile.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliProcess, type JsonLine, TEST_PASSPHRASE, runCli, startCli } from "../../scripts/harness/cli.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { join } from "node:path";
import { readKeyFile, SqliteClientStore } from "@remessenger/client-core/node";
import { DATABASE_FILE } from "../cli/src/profile.ts";
import {
  systemClock,
  ClientSession,
  contentText,
  deviceKeysOf,
  type OutboxEntry,
  type Clock,
} from "@remessenger/client-core";
import { SendMessageRequest } from "@remessenger/protocol";
import { type CliUser, createDirectChat, initUser, linkDevice, profileRoot } from "./cli-fixtures.ts";
import { FAST_TIMING } from "./devices.ts";
import { waitForEvent } from "../../scripts/harness/wait.ts";

let server: TestServer;
const profiles = profileRoot();

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
  profiles.dispose();
});

/**
 * Real timers, but the time the session reads stands still: the sender's
 * device list of the recipient stays within its refresh interval however slow
 * this machine is, so its next seal misses the new device for certain.
 */
function heldClock(): Clock {
  const atMs = Date.now();
  return { nowMs: () => atMs, setTimer: (callback, delayMs) => systemClock.setTimer(callback, delayMs) };
}

function payloadsOf(sealed: Uint8Array | undefined): Map<string, Uint8Array> {
  expect(sealed).toBeDefined();
  const request = SendMessageRequest.decode(sealed ?? new Uint8Array(0));
  return new Map(request.devicePayloads.map((p) => [p.deviceId, p.ciphertext]));
}

/** The message lines a listener printed up to and including the one with `lastText`. */
async function messagesUntil(listen: CliProcess, lastText: string): Promise<JsonLine[]> {
  await listen.next((l) => l.type === "message" && l.text === lastText, 30_000);
  const messages = listen.lines.filter((l) => l.type === "message");
  return messages.slice(0, messages.findIndex((l) => l.text === lastText) + 1);
}

describe("a recipient links a device mid-conversation", () => {
  it("reaches both of the recipient's devices once each with the same message id, resealing only for the new one", async () => {
    const alice = await initUser(profiles.profile("alice"), server.url, "Alice");
    const aliceLaptop = await linkDevice(server.url, alice, profiles.profile("alice-laptop"), "Alice's laptop");
    const bob = await initUser(profiles.profile("bob-phone"), server.url, "Bob");
    const chatId = await createDirectChat(alice, bob);

    // Alice's phone, opened in this process as an app would hold it: one session for the whole conversation.
    const secrets = await readKeyFile(alice.profile, {
      kind: "passphrase",
      passphrase: () => Promise.resolve(TEST_PASSPHRASE),
    });
    const { identity } = await deviceKeysOf(secrets);
    const store = SqliteClientStore.open(join(alice.profile, DATABASE_FILE));
    const profile = await store.getProfile();
    if (profile === undefined) throw new Error("alice's profile is not registered");
    const sender = new ClientSession({
      profile,
      signer: identity.signer,
      store,
      e2e: { identity, storageKey: secrets.storageKey },
      clock: heldClock(),
      timing: FAST_TIMING,
    });
    const listeners: CliProcess[] = [];
    const listen = (user: CliUser): CliProcess => {
      const process = startCli(user.profile, ["--json", "listen"]);
      listeners.push(process);
      return process;
    };
    /** Sends from the long-running client; resolves with the entry first stored and the one the server took. */
    const send = async (text: string): Promise<{ queued: OutboxEntry; sent: OutboxEntry }> => {
      const queued = await sender.send(chatId, text);
      const sent = await waitForEvent(
        sender.events,
        "outbox",
        (e) => e.messageId === queued.messageId && e.state !== "queued",
        30_000,
        `"${text}" to be sent`,
      );
      expect(sent.state, JSON.stringify(sent.problem)).toMatch(/^(sent|delivered)$/);
      return { queued, sent: (await store.getOutboxEntry(queued.messageId)) ?? sent };
    };

    await sender.start();
    try {
      await sender.whenLoggedIn({ timeoutMs: 15_000 });
      const atBobPhone = listen(bob);
      const atAliceLaptop = listen(aliceLaptop);

      // A conversation: Alice, Bob, Alice. Her client has fetched Bob's devices (the phone only).
      await send("one");
      await atBobPhone.next((l) => l.type === "message" && l.text === "one");
      const reply = waitForEvent(
        sender.events,
        "message",
        (e) => contentText(e.message.content) === "two",
        30_000,
        "Bob's reply",
      );
      expect((await runCli(bob.profile, ["send", chatId, "two", "--wait"])).code).toBe(0);
      await reply;
      await send("three");
      await atBobPhone.next((l) => l.type === "message" && l.text === "three");

      // Bob links a laptop; Alice's long-running client does not know yet.
      const bobLaptop = await linkDevice(server.url, bob, profiles.profile("bob-laptop"), "Bob's laptop");
      const atBobLaptop = listen(bobLaptop);

      const four = await send("four");
      const first = payloadsOf(four.queued.sealed);
      const final = payloadsOf(four.sent.sealed);
      // Sealed first for the devices Alice knew; the server refused it; resealed for the laptop alone.
      expect([...first.keys()].sort()).toEqual([aliceLaptop.deviceId, bob.deviceId].sort());
      expect([...final.keys()].sort()).toEqual([aliceLaptop.deviceId, bob.deviceId, bobLaptop.deviceId].sort());
      expect(final.get(bob.deviceId)).toEqual(first.get(bob.deviceId));
      expect(final.get(aliceLaptop.deviceId)).toEqual(first.get(aliceLaptop.deviceId));
      const request = (sealed: Uint8Array | undefined): SendMessageRequest =>
        SendMessageRequest.decode(sealed ?? new Uint8Array(0));
      expect(request(four.sent.sealed).messageId).toEqual(request(four.queued.sealed).messageId);
      expect(request(four.sent.sealed).chatId).toBe(chatId);

      // The conversation goes on: each ratchet moved once for "four", so "five" opens everywhere.
      await send("five");

      const texts = (lines: JsonLine[]): unknown[] => lines.map((l) => l.text);
      const phone = await messagesUntil(atBobPhone, "five");
      const laptop = await messagesUntil(atBobLaptop, "five");
      const mine = await messagesUntil(atAliceLaptop, "five");
      expect(texts(phone)).toEqual(["one", "three", "four", "five"]);
      expect(texts(laptop)).toEqual(["four", "five"]);
      expect(texts(mine)).toEqual(["one", "two", "three", "four", "five"]);
      for (const lines of [phone, laptop, mine]) {
        for (const line of lines) expect(line.state).toBe("received");
        const atFour = lines.find((l) => l.text === "four");
        expect(atFour).toMatchObject({ messageId: four.queued.messageId, sender: alice.userId });
        expect(atFour?.senderDevice).toBe(alice.deviceId);
      }
      // One seq for "four": the refused attempt stored nothing.
      const seqs = phone.map((l) => l.seq);
      expect(laptop.find((l) => l.text === "four")?.seq).toBe(phone.find((l) => l.text === "four")?.seq);
      expect(new Set(seqs).size).toBe(seqs.length);
      expect(four.sent.seq).toBe(phone.find((l) => l.text === "four")?.seq);
    } finally {
      await Promise.all(listeners.map((l) => l.stop()));
      await sender.stop();
      await store.close();
    }
  }, 120_000);
});
