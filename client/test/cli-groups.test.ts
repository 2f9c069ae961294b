/**
 * Groups through the real CLI (issue 5): `send` and `listen` work for a group
 * exactly as for a direct chat, and `listen` shows membership changes and
 * rotations as events. The members are `remessenger` processes on their own
 * profiles; the admin is a client session on the same core (the group
 * commands themselves are another suite's), and the server is a real process.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliProcess, type JsonLine, runCli, runCliJson, startCli } from "../../scripts/harness/cli.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import type { ClientSession } from "../core/src/session/client-session.ts";
import { type CliUser, type SendResult, initUser, profileRoot } from "./cli-fixtures.ts";
import { registerTestDevice, sessionFor } from "./devices.ts";

const WAIT = { timeoutMs: 10_000 };

let server: TestServer;
const profiles = profileRoot();

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
  profiles.dispose();
});

async function adminSession(): Promise<ClientSession> {
  const admin = await registerTestDevice(server.url, "admin");
  const session = sessionFor(admin);
  await session.start();
  await session.whenLoggedIn(WAIT);
  return session;
}

const isGroup = (change: string) => (line: JsonLine) => line.type === "group" && line.change === change;
const isText = (text: string) => (line: JsonLine) => line.type === "message" && line.text === text;

async function send(user: CliUser, chatId: string, text: string): Promise<SendResult> {
  const sent = await runCliJson<SendResult>(user.profile, ["--server", server.url, "send", chatId, text, "--wait"]);
  expect(sent.state).toBe("sent");
  return sent;
}

describe("groups through the CLI", () => {
  it("members send and listen in a group; listen shows creation, additions, rotations and removals, and a removed member reads nothing after", async () => {
    const admin = await adminSession();
    const bob = await initUser(profiles.profile("bob"), server.url, "bob");
    const carol = await initUser(profiles.profile("carol"), server.url, "carol");
    const dave = await initUser(profiles.profile("dave"), server.url, "dave");
    const listens: CliProcess[] = [];
    try {
      const bobListen = startCli(bob.profile, ["listen", "--json"]);
      const carolListen = startCli(carol.profile, ["listen", "--json"]);
      listens.push(bobListen, carolListen);
      await bobListen.next((l) => l.type === "connection" && l.state === "connected");
      await carolListen.next((l) => l.type === "connection" && l.state === "connected");

      const chatId = await admin.createGroup("crew", [bob.userId, carol.userId], WAIT);
      const created = await carolListen.next(isGroup("created"));
      expect(created).toMatchObject({ chatId, epoch: 1, rotation: true, title: "crew" });
      expect(created.members).toEqual([admin.userId, bob.userId, carol.userId].sort());

      await send(bob, chatId, "hello from bob");
      expect(await carolListen.next(isText("hello from bob"))).toMatchObject({ chatId, sender: bob.userId });

      await admin.changeGroup(chatId, { kind: "rotate" }, WAIT);
      expect(await bobListen.next(isGroup("rotated"))).toMatchObject({ epoch: 2, rotation: true });
      await send(carol, chatId, "carol in epoch 2");
      await bobListen.next(isText("carol in epoch 2"));

      await admin.changeGroup(chatId, { kind: "add", userIds: [dave.userId] }, WAIT);
      expect(await carolListen.next(isGroup("added"))).toMatchObject({ users: [dave.userId], epoch: 3 });
      await admin.changeGroup(chatId, { kind: "remove", userIds: [carol.userId] }, WAIT);
      expect(await carolListen.next(isGroup("removed"))).toMatchObject({ users: [carol.userId], epoch: 4 });
      await bobListen.next(isGroup("removed"));

      await admin.send(chatId, "after carol left");
      await bobListen.next(isText("after carol left"));
      // Dave joined after the first messages: his stream starts at his addition.
      const daveListen = startCli(dave.profile, ["listen", "--json"]);
      listens.push(daveListen);
      expect(await daveListen.next(isGroup("added"))).toMatchObject({ users: [dave.userId] });
      await daveListen.next(isGroup("removed"));
      await daveListen.next(isText("after carol left"));
      const daveTexts = daveListen.lines.filter((l) => l.type === "message").map((l) => l.text);
      expect(daveTexts).toEqual(["after carol left"]);

      // Everyone else has the last message: carol, removed, got nothing after her removal.
      await carolListen.stop();
      const afterRemoval = carolListen.lines.slice(carolListen.lines.findIndex(isGroup("removed")) + 1);
      expect(afterRemoval.filter((l) => l.type === "message" || l.type === "group")).toEqual([]);
      // Her send is refused with its reason, not lost silently.
      const refused = await runCli(carol.profile, ["--json", "send", chatId, "still here?", "--wait"]);
      expect(refused.code).not.toBe(0);
    } finally {
      await Promise.all(listens.map((l) => l.stop()));
      await admin.stop();
    }
  }, 90_000);

  it("listen shows a message of an epoch whose window closed as undecryptable, with its reason", async () => {
    const admin = await adminSession();
    // Bob's pushes lag behind (no subscription): he keeps sealing in the epoch he knows.
    const bobDevice = await registerTestDevice(server.url, "bob");
    const bob = sessionFor(bobDevice, { subscribe: false });
    await bob.start();
    const carol = await initUser(profiles.profile("carol2"), server.url, "carol");
    // Carol accepts a previous epoch for 3 entries of the group after a rotation.
    const carolListen = startCli(carol.profile, ["listen", "--json"], {
      env: { REMESSENGER_GROUP_GRACE_MESSAGES: "3" },
    });
    try {
      await carolListen.next((l) => l.type === "connection" && l.state === "connected");
      const chatId = await admin.createGroup("late", [bob.userId, carol.userId], WAIT);
      await bob.send(chatId, "bob in epoch 1");
      await carolListen.next(isText("bob in epoch 1"));

      await admin.changeGroup(chatId, { kind: "rotate" }, WAIT);
      for (const text of ["one", "two", "three", "four"]) await admin.send(chatId, text);
      await carolListen.next(isText("four"));
      await bob.send(chatId, "too late");
      const late = await carolListen.next(
        (l) => l.type === "message" && l.sender === bob.userId && l.state === "undecryptable",
      );
      expect(late.reason).toMatch(/^undecryptable: epoch-expired \(sealed in epoch 1/);
      expect(late.text).toBeNull();
    } finally {
      await carolListen.stop();
      await bob.stop();
      await admin.stop();
    }
  }, 60_000);
});
