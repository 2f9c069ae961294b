/**
 * A device that loses its session state: the next message from its peer
 * cannot be decrypted. It is shown as undecryptable with the reason (never
 * dropped), the device starts a new session from a fresh prekey of the peer,
 * the peer is told, and the message after that gets through. Real server,
 * real CLI processes.
 */
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, startCli } from "../../scripts/harness/cli.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { DATABASE_FILE } from "../cli/src/profile.ts";
import { createDirectChat, initUser, profileRoot } from "./cli-fixtures.ts";

let server: TestServer;
const profiles = profileRoot();

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
  profiles.dispose();
});

describe("session healing", () => {
  it("shows an undecryptable message with its reason, resets the session, and the next message gets through", async () => {
    const alice = await initUser(profiles.profile("alice"), server.url, "Alice");
    const bob = await initUser(profiles.profile("bob"), server.url, "Bob");
    const chatId = await createDirectChat(alice, bob);
    expect((await runCli(alice.profile, ["send", chatId, "one", "--wait"])).code).toBe(0);
    const first = startCli(bob.profile, ["--json", "listen", "--exit-after", "1"]);
    expect((await first.exited(30_000)).code, first.stderr()).toBe(0);
    expect(first.lines.find((l) => l.type === "message")?.text).toBe("one");
    // Bob answers, so both sides ratchet and alice's next message is a plain ratchet message.
    expect((await runCli(bob.profile, ["send", chatId, "hi alice", "--wait"])).code).toBe(0);
    const atAlice = startCli(alice.profile, ["--json", "listen", "--exit-after", "1"]);
    expect((await atAlice.exited(30_000)).code).toBe(0);

    // Bob's device loses every session (its keys and prekeys stay).
    const db = new DatabaseSync(join(bob.profile, DATABASE_FILE));
    const lost = db.prepare("DELETE FROM e2e_state WHERE key LIKE 'session/%'").run();
    db.close();
    expect(lost.changes).toBe(1);

    const bobListen = startCli(bob.profile, ["--json", "listen"]);
    const aliceListen = startCli(alice.profile, ["--json", "listen"]);
    try {
      await bobListen.next((l) => l.type === "connection" && l.state === "connected");
      await aliceListen.next((l) => l.type === "connection" && l.state === "connected");
      expect((await runCli(alice.profile, ["send", chatId, "two", "--wait"])).code).toBe(0);
      const broken = await bobListen.next((l) => l.type === "message");
      expect(broken).toMatchObject({ state: "undecryptable", text: null, sender: alice.userId });
      expect(String(broken.reason)).toMatch(/no-session/);
      const healing = await bobListen.next((l) => l.type === "session");
      expect(healing).toMatchObject({ event: "healing", user: alice.userId, device: alice.deviceId });
      // Alice's device is told, through the new session.
      const reset = await aliceListen.next((l) => l.type === "session", 30_000);
      expect(reset).toMatchObject({ event: "reset", user: bob.userId, device: bob.deviceId });

      expect((await runCli(alice.profile, ["send", chatId, "three", "--wait"])).code).toBe(0);
      const healed = await bobListen.next((l) => l.type === "message", 30_000);
      expect(healed).toMatchObject({ state: "received", text: "three" });
      // And back the other way.
      expect((await runCli(bob.profile, ["send", chatId, "four", "--wait"])).code).toBe(0);
      expect(await aliceListen.next((l) => l.type === "message" && l.text === "four", 30_000)).toMatchObject({
        state: "received",
      });
    } finally {
      await bobListen.stop();
      await aliceListen.stop();
    }
  }, 120_000);
});
