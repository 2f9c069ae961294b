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
import { join } from "node:path";
import { DATABASE_FILE } from "../cli/src/profile.ts";
import { SqliteClientStore } from "@remessenger/client-core/node";
import type { ClientSession } from "@remessenger/client-core";
import { type CliUser, type SendResult, initUser, profileRoot } from "./cli-fixtures.ts";
import { registerTestDevice, sessionFor } from "./devices.ts";
import { waitForEvent } from "../../scripts/harness/wait.ts";

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

const isText = (text: string) => (line: JsonLine) => line.type === "message" && line.text === text;

async function send(user: CliUser, chatId: string, text: string): Promise<SendResult> {
  const sent = await runCliJson<SendResult>(user.profile, ["--server", server.url, "send", chatId, text, "--wait"]);
  expect(sent.state).toBe("sent");
  return sent;
}

describe("groups through the CLI", () => {
  it("three members talk while a fourth is added and a second removed (all CLI): each reads exactly what its membership allows, in one order; listen shows every change", async () => {
    const names = ["alice", "bob", "carol", "dave"];
    const [alice, bob, carol, dave] = await Promise.all(
      names.map((name) => initUser(profiles.profile(name), server.url, name)),
    );
    if (alice === undefined || bob === undefined || carol === undefined || dave === undefined)
      throw new Error("no users");
    const listens = new Map<CliUser, CliProcess>();
    const listen = async (user: CliUser): Promise<CliProcess> => {
      const process = startCli(user.profile, ["listen", "--json"]);
      listens.set(user, process);
      await process.next((l) => l.type === "connection" && l.state === "connected");
      return process;
    };
    try {
      for (const user of [alice, bob, carol]) await listen(user);
      const { chatId } = await runCliJson<{ chatId: string }>(alice.profile, [
        "group",
        "create",
        "--name",
        "crew",
        "--members",
        `${bob.userId},${carol.userId}`,
      ]);
      const sent: Array<{ from: CliUser; text: string; seq: number }> = [];
      const round = async (label: string, who: readonly CliUser[]): Promise<void> => {
        // The members send at once: their messages interleave on the server.
        const text = (u: CliUser): string => `${label} from ${u.profile.slice(u.profile.lastIndexOf("/") + 1)}`;
        const results = await Promise.all(who.map((u) => send(u, chatId, text(u))));
        results.forEach((r, i) => {
          const from = who[i];
          if (from !== undefined) sent.push({ from, text: text(from), seq: r.seq ?? 0 });
        });
      };
      await round("1", [alice, bob, carol]);
      const added = await runCliJson<{ seq: number; epoch: number }>(alice.profile, [
        "group",
        "add",
        chatId,
        dave.userId,
      ]);
      await listen(dave);
      await round("2", [alice, bob, carol, dave]);
      const removed = await runCliJson<{ seq: number; epoch: number }>(alice.profile, [
        "group",
        "remove",
        chatId,
        bob.userId,
      ]);
      await round("3", [alice, carol, dave]);
      await runCliJson(alice.profile, ["group", "rotate", chatId]);
      await round("4", [alice, carol, dave]);

      const mayRead = (user: CliUser, m: { from: CliUser; seq: number }): boolean =>
        m.from !== user && (user !== bob || m.seq < removed.seq) && (user !== dave || m.seq > added.seq);
      for (const [user, process] of listens) {
        const expected = sent.filter((m) => mayRead(user, m)).sort((a, b) => a.seq - b.seq);
        const last = expected.at(-1);
        if (last !== undefined) await process.next(isText(last.text));
        // Exactly these, in the server's order (a message sealed before dave's join shows as not for him).
        const texts = process.lines.filter((l) => l.type === "message" && l.state === "received");
        expect(
          texts.map((l) => l.text),
          user.profile,
        ).toEqual(expected.map((m) => m.text));
        expect(texts.map((l) => l.seq)).toEqual(expected.map((m) => m.seq));
      }
      const changes = (user: CliUser): unknown[] =>
        (listens.get(user)?.lines ?? []).filter((l) => l.type === "group").map((l) => [l.change, l.epoch]);
      // Every change came before the last message each member waited for.
      expect(changes(carol)).toEqual([
        ["created", 1],
        ["added", 2],
        ["removed", 3],
        ["rotated", 4],
      ]);
      // Bob sees his removal, then nothing more; dave's stream starts at his addition.
      expect(changes(bob)).toEqual([
        ["created", 1],
        ["added", 2],
        ["removed", 3],
      ]);
      expect(changes(dave)[0]).toEqual(["added", 2]);
      // Bob's send after his removal is refused with a reason, not lost silently.
      const refused = await runCli(bob.profile, ["--json", "send", chatId, "still here?", "--wait"]);
      expect(refused.code).not.toBe(0);
    } finally {
      await Promise.all([...listens.values()].map((l) => l.stop()));
    }
  }, 120_000);

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
  it("listen shows a lost sender key healing: the message is undecryptable with its reason, the key is asked for, and the sender's next message reads", async () => {
    const alice = await adminSession();
    const bob = await initUser(profiles.profile("bob-lossy"), server.url, "bob");
    let listen = startCli(bob.profile, ["listen", "--json"]);
    try {
      await listen.next((l) => l.type === "connection" && l.state === "connected");
      const chatId = await alice.createGroup("lossy", [bob.userId], WAIT);
      await alice.send(chatId, "before the loss");
      await listen.next(isText("before the loss"));
      await listen.stop();
      // Bob's copy of alice's key is lost (a damaged or restored store).
      const store = SqliteClientStore.open(join(bob.profile, DATABASE_FILE));
      try {
        const keys = await store.listE2eKeys(`group/${chatId}/from/${alice.deviceId}/`);
        expect(keys).toHaveLength(1);
        const records = await store.readE2e(keys);
        await store.writeE2e([...records].map(([key, r]) => ({ key, expectedVersion: r.version, value: undefined })));
      } finally {
        await store.close();
      }
      const answered = waitForEvent(alice.events, "senderKeyRequest", () => true, 15_000, "alice answers bob");
      listen = startCli(bob.profile, ["listen", "--json"]);
      await listen.next((l) => l.type === "connection" && l.state === "connected");
      await alice.send(chatId, "while bob has no key");
      const refused = await listen.next((l) => l.type === "message" && l.state === "undecryptable");
      expect(refused.reason).toMatch(/^undecryptable: no-sender-key/);
      const asked = await listen.next((l) => l.type === "session" && l.event === "key-requested");
      expect(asked).toMatchObject({ chatId, user: alice.userId, device: alice.deviceId, epoch: 1 });
      expect(await answered).toMatchObject({ kind: "answered", fromUserId: bob.userId, epoch: 1 });
      await alice.send(chatId, "after the request");
      await listen.next(isText("after the request"));
    } finally {
      await listen.stop();
      await alice.stop();
    }
  }, 60_000);
});
