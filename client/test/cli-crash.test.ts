/**
 * Crash safety of the CLI's outbox: a `send` killed with SIGKILL after the
 * message was persisted — before the server had it, or after the server
 * stored it but before the answer arrived — is sent again by the next run,
 * and the receiver gets it exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliJson, startCli } from "../../scripts/harness/cli.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type SendResult, createDirectChat, initUser, outboxOf, profileRoot } from "./cli-fixtures.ts";
import { startFrameGate } from "./frame-gate-proxy.ts";
import { waitUntil } from "../../scripts/harness/wait.ts";

let server: TestServer;
const profiles = profileRoot();

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
  profiles.dispose();
});

describe("remessenger CLI killed mid-send", () => {
  it("resends a message persisted before the server saw it, and it arrives once", async () => {
    const alice = await initUser(profiles.profile("alice"), server.url, "Alice");
    const bob = await initUser(profiles.profile("bob"), server.url, "Bob");
    const chatId = await createDirectChat(alice, bob);

    server.pause(); // sockets open, no answers: the send hangs after persisting
    try {
      const send = startCli(alice.profile, ["--json", "send", "--wait", chatId, "survivor"]);
      await waitUntil(async () => (await outboxOf(alice.profile)).length === 1, 15_000, "the message in the outbox");
      await send.kill();
    } finally {
      server.resume();
    }
    const [entry] = await outboxOf(alice.profile);
    expect(entry?.state).toBe("queued");

    const listen = startCli(alice.profile, ["--json", "listen"]);
    try {
      const sent = await listen.next(
        (l) => l.type === "outbox" && l.messageId === entry?.messageId && l.state === "sent",
      );
      expect(sent.seq).toBe(1);
    } finally {
      await listen.stop();
    }
    const after = await runCliJson<SendResult>(alice.profile, ["send", chatId, "after"]);
    expect(after.seq).toBe(2);

    const bobListen = startCli(bob.profile, ["--json", "listen", "--exit-after", "2"]);
    expect((await bobListen.exited()).code).toBe(0);
    const texts = bobListen.lines.filter((l) => l.type === "message").map((l) => [l.seq, l.text]);
    expect(texts).toEqual([
      [1, "survivor"],
      [2, "after"],
    ]);
  });

  it("resends a message the server stored but never answered, gets the same seq, and it arrives once", async () => {
    const alice = await initUser(profiles.profile("alice-gate"), server.url, "Alice");
    const bob = await initUser(profiles.profile("bob-gate"), server.url, "Bob");
    const chatId = await createDirectChat(alice, bob);
    const bobListen = startCli(bob.profile, ["--json", "listen"]);
    // The gate lets the send through to the server and swallows its answer.
    const gate = await startFrameGate(server.url, (frame) => frame.request.$case === "sendMessage");
    try {
      await bobListen.next((l) => l.type === "connection" && l.state === "connected");
      const send = startCli(alice.profile, ["--json", "--server", gate.url, "send", "--wait", chatId, "exactly once"]);
      const received = await bobListen.next((l) => l.type === "message");
      expect(received).toMatchObject({ text: "exactly once", seq: 1 });
      expect(gate.isHolding).toBe(true);
      await send.kill();
      const [entry] = await outboxOf(alice.profile);
      expect(entry).toMatchObject({ messageId: received.messageId, state: "queued" });

      // The next run (straight to the server) resends; the server answers with the first seq.
      const retry = await runCliJson<SendResult>(alice.profile, ["--server", server.url, "send", chatId, "next"]);
      expect(retry.seq).toBe(2);
      expect((await outboxOf(alice.profile)).map((e) => [e.messageId, e.seq])).toEqual([
        [received.messageId, 1],
        [retry.messageId, 2],
      ]);
      // Bob's next message is "next": the resend delivered nothing new.
      expect(await bobListen.next((l) => l.type === "message")).toMatchObject({ text: "next", seq: 2 });
    } finally {
      await gate.close();
      await bobListen.stop();
    }
  });
});
