/**
 * Group end-to-end encryption against the real server process (issue 5):
 * members are client sessions on the real core (Sender Keys, epochs, the
 * grace window, distributions over the pairwise sessions), the server is a
 * separate process. Every check reads what each member's session decrypted.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import {
  type GraceWindow,
  type OutboxEntry,
  type ClientSession,
  type ClientSessionOptions,
  type GroupEvent,
  type SenderKeyRequestEvent,
  type SessionEvents,
  contentText,
  webSocketTransportFactory,
} from "@remessenger/client-core";
import { GroupEnvelope, SendMessageRequest } from "@remessenger/protocol";
import { type TestDevice, registerTestDevice, sessionFor } from "./devices.ts";
import { waitForEvent, waitUntil } from "../../scripts/harness/wait.ts";

const WAIT = { timeoutMs: 10_000 };

let server: TestServer;
const running: ClientSession[] = [];

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.cleanup();
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

/** A member device: its session, and what it decrypted, refused and saw happen to the group, by seq. */
interface Member {
  name: string;
  device: TestDevice;
  session: ClientSession;
  read: Map<number, string>;
  refused: Map<number, string>;
  events: GroupEvent[];
}

async function member(
  name: string,
  window?: GraceWindow,
  options: Partial<ClientSessionOptions> = {},
): Promise<Member> {
  const device = await registerTestDevice(server.url, name);
  return online({ name, device, read: new Map(), refused: new Map(), events: [] }, window, options);
}

/** Starts (again) the member's session, collecting what it receives. */
async function online(
  m: Omit<Member, "session"> & { session?: ClientSession },
  window?: GraceWindow,
  options: Partial<ClientSessionOptions> = {},
): Promise<Member> {
  const session = sessionFor(m.device, { ...options, ...(window === undefined ? {} : { groupWindow: window }) });
  session.events.on("message", ({ message, isOwnDevice }) => {
    if (isOwnDevice) return;
    const text = contentText(message.content);
    if (text !== undefined) m.read.set(message.seq, text);
    else m.refused.set(message.seq, message.problem ?? "no text");
  });
  session.events.on("group", (event) => m.events.push(event));
  running.push(session);
  await session.start();
  await session.whenLoggedIn(WAIT);
  return { ...m, session };
}

/** Takes the member offline: its session stops, and one that cannot reach any server takes its place (writes go to the outbox). */
async function offline(m: Member): Promise<void> {
  await m.session.stop();
  running.splice(running.indexOf(m.session), 1);
  const unreachable = sessionFor(m.device, {
    transports: webSocketTransportFactory({ serverUrl: "http://127.0.0.1:9" }),
    sendOutbox: false,
  });
  running.push(unreachable);
  await unreachable.start();
  m.session = unreachable;
}

/** Brings an offline member back, or reconnects one (its outbox goes out). */
async function back(m: Member, window?: GraceWindow, options: Partial<ClientSessionOptions> = {}): Promise<void> {
  await m.session.stop();
  running.splice(running.indexOf(m.session), 1);
  m.session = (await online(m, window, options)).session;
}

interface Sent {
  from: string;
  text: string;
  seq: number;
  epoch: number;
}

/** Queues `text` and waits for its seq; returns where it landed and the epoch it was sealed in. */
async function sendAndWait(m: Member, chatId: string, text: string): Promise<Sent> {
  const entry = await m.session.send(chatId, text);
  const sent = await waitForEvent(
    m.session.events,
    "outbox",
    (e) => e.messageId === entry.messageId && e.seq !== undefined,
    15_000,
    `${m.name}'s "${text}" sent`,
  );
  return { from: m.name, text, seq: sent.seq ?? 0, epoch: await sealedEpoch(m, entry.messageId) };
}

async function sealedEpoch(m: Member, messageId: string): Promise<number> {
  const sealed = (await m.device.store.getOutboxEntry(messageId))?.sealed;
  if (sealed === undefined) throw new Error(`${messageId} was never sealed`);
  return GroupEnvelope.decode(SendMessageRequest.decode(sealed).payload).epoch;
}

function waitForChange(m: Member, predicate: (event: GroupEvent) => boolean, what: string): Promise<GroupEvent> {
  const seen = m.events.find(predicate);
  if (seen !== undefined) return Promise.resolve(seen);
  return waitForEvent(m.session.events, "group", predicate, 15_000, `${m.name}: ${what}`);
}

function waitReadOrRefused(m: Member, seq: number): Promise<void> {
  return waitUntil(() => m.read.has(seq) || m.refused.has(seq), 15_000, `${m.name} gets #${seq}`);
}

async function waitForReads(m: Member, seqs: readonly number[], what: string): Promise<void> {
  await waitUntil(() => seqs.every((seq) => m.read.has(seq) || m.refused.has(seq)), 30_000, `${m.name} ${what}`);
}

describe("groups end to end (real server process)", () => {
  it("three members talk while a fourth is added and a second removed: each reads exactly what its membership allows, all in one order", async () => {
    const alice = await member("alice");
    const bob = await member("bob");
    const carol = await member("carol");
    const dave = await member("dave");
    const chatId = await alice.session.createGroup(
      "friends",
      [bob.device.profile.userId, carol.device.profile.userId],
      WAIT,
    );
    await waitForChange(carol, (e) => e.kind === "change" && e.change.change === "created", "the group");
    const sent: Sent[] = [];
    const round = async (label: string, who: readonly Member[]): Promise<void> => {
      // The members send at once: their messages interleave on the server.
      const batch = await Promise.all(who.map((m) => sendAndWait(m, chatId, `${label} from ${m.name}`)));
      sent.push(...batch);
    };
    await round("1", [alice, bob, carol]);
    await round("2", [alice, bob, carol]);
    const added = await alice.session.changeGroup(chatId, { kind: "add", userIds: [dave.device.profile.userId] }, WAIT);
    await round("3", [alice, bob, carol, dave]);
    const removed = await alice.session.changeGroup(
      chatId,
      { kind: "remove", userIds: [bob.device.profile.userId] },
      WAIT,
    );
    await waitForChange(bob, (e) => e.kind === "change" && e.change.change === "removed", "its removal");
    await round("4", [alice, carol, dave]);
    await round("5", [alice, carol, dave]);

    const everyone = [alice, bob, carol, dave];
    const seqs = (m: Member): number[] => sent.filter((s) => s.from !== m.name && shouldRead(m, s)).map((s) => s.seq);
    const shouldRead = (m: Member, s: Sent): boolean => {
      if (m === bob) return s.seq < removed.seq;
      if (m === dave) return s.seq > added.seq && s.epoch >= added.epoch;
      return true;
    };
    for (const m of everyone) await waitForReads(m, seqs(m), "reads what it may");

    for (const m of everyone) {
      for (const s of sent) {
        if (s.from === m.name) continue;
        if (shouldRead(m, s)) expect(m.read.get(s.seq), `${m.name} reads ${s.text}`).toBe(s.text);
        else expect(m.read.has(s.seq), `${m.name} must not read ${s.text}`).toBe(false);
      }
    }
    // Bob reads nothing of the epoch after his removal (the server sends him nothing either).
    expect([...bob.read.keys()].every((seq) => seq < removed.seq)).toBe(true);
    // Dave reads nothing sent before he joined.
    expect([...dave.read.keys()].every((seq) => seq > added.seq)).toBe(true);
    // One order: every member's view of the chat agrees seq by seq with the server's.
    const bySeq = new Map(sent.map((s) => [s.seq, s.text]));
    for (const m of everyone) for (const [seq, text] of m.read) expect(bySeq.get(seq)).toBe(text);
    expect(alice.events.map((e) => (e.kind === "change" ? e.change.change : e.reason))).toEqual([
      "created",
      "added",
      "removed",
    ]);
    expect(carol.events.map((e) => (e.kind === "change" ? e.change.change : e.reason))).toEqual([
      "created",
      "added",
      "removed",
    ]);
  }, 90_000);

  it("a rotation while 100 messages are in flight loses none; a message of the old epoch after the window is refused with its reason", async () => {
    const window: GraceWindow = { ms: 60 * 60 * 1000, messages: 110 };
    const alice = await member("alice", window);
    const carol = await member("carol", window);
    // Bob's pushes lag behind: his session does not subscribe, so he hears of no rotation
    // on this connection and keeps sealing in the epoch he knows, as a sender does whose
    // messages are already on their way when the rotation happens.
    const bob = await member("bob", undefined, { subscribe: false });
    const chatId = await alice.session.createGroup(
      "rotation",
      [bob.device.profile.userId, carol.device.profile.userId],
      WAIT,
    );
    const warmUp = await sendAndWait(bob, chatId, "warm-up"); // bob's key of epoch 1 reaches everyone
    const rotation = await alice.session.changeGroup(chatId, { kind: "rotate" }, WAIT);
    expect(rotation.epoch).toBe(2);

    const inFlight: Sent[] = [];
    const queued: OutboxEntry[] = [];
    for (let i = 0; i < 100; i += 1) queued.push(await bob.session.send(chatId, `in flight ${i}`));
    const seqOf = async (messageId: string): Promise<number | undefined> =>
      (await bob.device.store.getOutboxEntry(messageId))?.seq;
    await waitUntil(
      async () => (await Promise.all(queued.map((e) => seqOf(e.messageId)))).every((seq) => seq !== undefined),
      30_000,
      "bob's 100 messages sent",
    );
    for (const [i, entry] of queued.entries()) {
      inFlight.push({
        from: "bob",
        text: `in flight ${i}`,
        seq: (await seqOf(entry.messageId)) ?? 0,
        epoch: await sealedEpoch(bob, entry.messageId),
      });
    }
    // All 100 landed after the rotation, sealed in the epoch before it.
    expect(inFlight.every((s) => s.epoch === 1 && s.seq > rotation.seq)).toBe(true);
    for (const m of [alice, carol]) {
      await waitForReads(
        m,
        inFlight.map((s) => s.seq),
        "reads the messages in flight",
      );
      for (const s of [warmUp, ...inFlight]) expect(m.read.get(s.seq), `${m.name}: ${s.text}`).toBe(s.text);
      expect(m.refused.size).toBe(0);
    }

    // The group moves on by more than the window; bob, still unaware, sends once more in epoch 1.
    for (let i = 0; i < 10; i += 1) await alice.session.send(chatId, `moving on ${i}`);
    const movedOn = await sendAndWait(alice, chatId, "moved on");
    expect(movedOn.seq - rotation.seq).toBeGreaterThan(window.messages);
    const late = await sendAndWait(bob, chatId, "too late");
    expect(late.epoch).toBe(1);
    for (const m of [alice, carol]) {
      await waitReadOrRefused(m, late.seq);
      // Shown with its reason, never read.
      expect(m.refused.get(late.seq)).toMatch(/^undecryptable: epoch-expired \(sealed in epoch 1/);
      expect(m.read.has(late.seq)).toBe(false);
    }

    // On a new connection bob compares his chain with the server's: his next message is in epoch 2.
    await back(bob, undefined, { subscribe: false });
    const fresh = await sendAndWait(bob, chatId, "bob, up to date");
    expect(fresh.epoch).toBe(2);
    for (const m of [alice, carol]) {
      await waitReadOrRefused(m, fresh.seq);
      expect(m.read.get(fresh.seq)).toBe("bob, up to date");
    }
  }, 120_000);

  it("a member offline during two rotations comes back and reads everything it is entitled to", async () => {
    const alice = await member("alice");
    const bob = await member("bob");
    const carol = await member("carol");
    const chatId = await alice.session.createGroup(
      "away",
      [bob.device.profile.userId, carol.device.profile.userId],
      WAIT,
    );
    await waitForChange(carol, (e) => e.kind === "change", "the group");
    const sent: Sent[] = [await sendAndWait(alice, chatId, "before")];
    await waitForReads(carol, [sent[0]?.seq ?? 0], "reads the first message");
    await offline(carol);
    sent.push(await sendAndWait(bob, chatId, "epoch 1 while away"));
    await alice.session.changeGroup(chatId, { kind: "rotate" }, WAIT);
    sent.push(await sendAndWait(alice, chatId, "epoch 2 from alice"));
    sent.push(await sendAndWait(bob, chatId, "epoch 2 from bob"));
    await alice.session.changeGroup(chatId, { kind: "rotate" }, WAIT);
    sent.push(await sendAndWait(bob, chatId, "epoch 3 from bob"));
    sent.push(await sendAndWait(alice, chatId, "epoch 3 from alice"));
    expect(sent.map((s) => s.epoch)).toEqual([1, 1, 2, 2, 3, 3]);

    await back(carol);
    await waitForReads(
      carol,
      sent.map((s) => s.seq),
      "catches up",
    );
    expect(sent.map((s) => carol.read.get(s.seq))).toEqual(sent.map((s) => s.text));
    expect(carol.refused.size).toBe(0);
    expect(
      carol.events
        .filter((e) => e.kind === "change" && e.change.isRotation)
        .map((e) => (e.kind === "change" ? e.change.epoch : 0)),
    ).toEqual([1, 2, 3]);
  }, 60_000);
  it("a member that lost a sender's key asks that device for it: the sender's next messages open again; a request of a member added later, or of a removed one, is refused", async () => {
    const alice = await member("alice");
    const bob = await member("bob");
    const carol = await member("carol");
    const dave = await member("dave");
    const requested: SessionEvents["senderKeyRequested"][] = [];
    const answers: SenderKeyRequestEvent[] = [];
    bob.session.events.on("senderKeyRequested", (event) => requested.push(event));
    alice.session.events.on("senderKeyRequest", (event) => answers.push(event));
    const chatId = await alice.session.createGroup(
      "lossy",
      [bob.device.profile.userId, carol.device.profile.userId],
      WAIT,
    );
    const aliceDevice = alice.device.profile.deviceId;
    const first = await sendAndWait(alice, chatId, "before the loss");
    await waitForReads(bob, [first.seq], "reads the first message");
    expect(bob.read.get(first.seq)).toBe("before the loss");

    // Bob's copy of alice's key of epoch 1 is lost (a damaged or restored store).
    const keys = await bob.device.store.listE2eKeys(`group/${chatId}/from/${aliceDevice}/`);
    expect(keys).toEqual([`group/${chatId}/from/${aliceDevice}/1`]);
    const records = await bob.device.store.readE2e(keys);
    await bob.device.store.writeE2e(
      [...records].map(([key, record]) => ({ key, expectedVersion: record.version, value: undefined })),
    );

    const lost = await sendAndWait(alice, chatId, "while bob has no key");
    await waitReadOrRefused(bob, lost.seq);
    // Shown with its reason, never dropped; bob asks alice's device for its key.
    expect(bob.refused.get(lost.seq)).toMatch(/^undecryptable: no-sender-key \(no sender key of device /);
    await waitUntil(() => answers.length > 0, 15_000, "alice answers bob's request");
    expect(requested).toMatchObject([{ chatId, userId: alice.device.profile.userId, deviceId: aliceDevice, epoch: 1 }]);
    expect(answers).toMatchObject([
      {
        kind: "answered",
        chatId,
        fromUserId: bob.device.profile.userId,
        fromDeviceId: bob.device.profile.deviceId,
        epoch: 1,
      },
    ]);

    const after = [
      await sendAndWait(alice, chatId, "after the request 1"),
      await sendAndWait(alice, chatId, "after the request 2"),
    ];
    await waitForReads(
      bob,
      after.map((s) => s.seq),
      "reads alice's later messages",
    );
    for (const s of after) expect(bob.read.get(s.seq)).toBe(s.text);
    // The one sealed before the answer stays refused, with its reason.
    expect(bob.read.has(lost.seq)).toBe(false);
    // Carol, who lost nothing, read everything; she was never asked to hand out anything.
    await waitForReads(
      carol,
      [first, lost, ...after].map((s) => s.seq),
      "reads everything",
    );
    expect([first, lost, ...after].map((s) => carol.read.get(s.seq))).toEqual(
      [first, lost, ...after].map((s) => s.text),
    );
    expect(requested).toHaveLength(1);

    // Dave joins in epoch 2 and asks for alice's key of epoch 1: refused, nothing handed out.
    await alice.session.changeGroup(chatId, { kind: "add", userIds: [dave.device.profile.userId] }, WAIT);
    await waitForChange(dave, (e) => e.kind === "change" && e.change.change === "added", "its addition");
    await dave.session.requestSenderKey(chatId, aliceDevice, 1);
    await waitUntil(() => answers.length > 1, 15_000, "alice answers dave's request");
    expect(answers[1]).toMatchObject({
      kind: "refused",
      fromUserId: dave.device.profile.userId,
      epoch: 1,
      reason: "not-entitled",
    });
    expect(await dave.device.store.listE2eKeys(`group/${chatId}/from/${aliceDevice}/1`)).toEqual([]);
    // Asking again at once is ignored (each answer costs alice a pairwise encryption): once alice
    // has read what dave wrote after it, no third answer comes (checked at the end).
    await dave.session.requestSenderKey(chatId, aliceDevice, 1);
    const afterAsking = await sendAndWait(dave, chatId, "dave, after asking twice");
    await waitForReads(alice, [afterAsking.seq], "reads what dave wrote after asking twice");

    // Carol is removed; her request for the new epoch's key never reaches alice: the server refuses it.
    const removal = await alice.session.changeGroup(
      chatId,
      { kind: "remove", userIds: [carol.device.profile.userId] },
      WAIT,
    );
    await waitForChange(carol, (e) => e.kind === "change" && e.change.change === "removed", "her removal");
    const request = await carol.session.requestSenderKey(chatId, aliceDevice, removal.epoch);
    const failed = await waitForEvent(
      carol.session.events,
      "outbox",
      (e) => e.messageId === request.messageId && e.state === "failed",
      15_000,
      "carol's request refused",
    );
    expect(failed.problem?.code).toBe("NOT_FOUND");
    const lastWord = await sendAndWait(alice, chatId, "after carol left");
    await waitForReads(bob, [lastWord.seq], "reads the last message");
    expect(answers).toHaveLength(2);
  }, 90_000);
});
