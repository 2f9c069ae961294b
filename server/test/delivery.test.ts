import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isError, messageIdToHex, newMessageId, ErrorCode, type Message } from "@remessenger/protocol";
import { FrameDriver, type Identity } from "../../scripts/harness/frame-driver.ts";
import { STORE_KINDS, startServerOn, type ServerUnderTest } from "./store-targets.ts";

function texts(messages: Message[]): string[] {
  return messages.map((m) => new TextDecoder().decode(m.payload));
}

function seqs(messages: Message[]): number[] {
  return messages.map((m) => m.seq);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

describe.each(STORE_KINDS)("store-and-forward delivery (%s store)", (kind) => {
  let target: ServerUnderTest;
  let url: string;

  beforeAll(async () => {
    target = await startServerOn(kind);
    url = target.server.url;
  });

  afterAll(async () => {
    await target.stop();
  });

  async function pair(): Promise<{
    alice: FrameDriver;
    bob: FrameDriver;
    bobId: Identity;
    aliceId: Identity;
    chatId: string;
  }> {
    const alice = await FrameDriver.connect(url);
    const bob = await FrameDriver.connect(url);
    const aliceId = await alice.register("alice");
    const bobId = await bob.register("bob");
    const chatId = await alice.createDirectChat(bobId.userId);
    return { alice, bob, aliceId, bobId, chatId };
  }

  it("gives a message id sent twice, concurrently and across a reconnect one seq and one delivery", async () => {
    const { alice, bob, aliceId, chatId } = await pair();
    const first = newMessageId();
    const a = await alice.send(chatId, "once", first);
    const b = await alice.send(chatId, "once", first);
    expect(a).toMatchObject({ seq: 1, duplicate: false });
    expect(b).toMatchObject({ seq: 1, duplicate: true });

    const racing = newMessageId();
    const answers = await Promise.all(range(1, 8).map(() => alice.send(chatId, "racing", racing)));
    expect(new Set(answers.map((r) => r.seq))).toEqual(new Set([2]));
    expect(answers.filter((r) => !r.duplicate)).toHaveLength(1);

    alice.close();
    await alice.closed;
    const again = await FrameDriver.connect(url);
    await again.login(aliceId);
    expect(await again.send(chatId, "once", first)).toMatchObject({ seq: 1, duplicate: true });
    expect(await again.send(chatId, "racing", racing)).toMatchObject({ seq: 2, duplicate: true });

    await bob.subscribe();
    await bob.waitFor(() => bob.isSynced(), "sync");
    expect(seqs(bob.messages())).toEqual([1, 2]);
    expect(bob.messages().map((m) => messageIdToHex(m.messageId))).toEqual([
      messageIdToHex(first),
      messageIdToHex(racing),
    ]);
    again.close();
    bob.close();
  });

  it("refuses a message id already used by another sender in the chat", async () => {
    const { alice, bob, chatId } = await pair();
    const id = newMessageId();
    await alice.send(chatId, "mine", id);
    await expect(bob.send(chatId, "stolen id", id)).rejects.toSatisfy((e) =>
      isError(e, ErrorCode.ERROR_CODE_ALREADY_EXISTS),
    );
    alice.close();
    bob.close();
  });

  it("shows every device the same gapless order when two senders write concurrently", async () => {
    const { alice, bob, chatId } = await pair();
    await Promise.all([alice.subscribe(), bob.subscribe()]);
    const count = 150;
    const own = new Map<FrameDriver, Map<number, string>>([
      [alice, new Map()],
      [bob, new Map()],
    ]);
    const sendAs = (device: FrameDriver, text: string): Promise<void> =>
      device.send(chatId, text).then(({ seq }) => {
        own.get(device)?.set(seq, text);
      });
    await Promise.all(range(1, count).flatMap((i) => [sendAs(alice, `a${i}`), sendAs(bob, `b${i}`)]));

    // A device's view: what was pushed to it, plus its own messages it was not
    // pushed because it had them (it learned their seqs from the answers).
    const viewOf = (device: FrameDriver): Map<number, string> => {
      const view = new Map(own.get(device));
      for (const m of device.messages()) view.set(m.seq, new TextDecoder().decode(m.payload));
      return view;
    };
    for (const device of [alice, bob]) {
      await device.waitFor(() => viewOf(device).size >= 2 * count, "all messages");
      const pushed = seqs(device.messages());
      expect(pushed).toEqual([...new Set(pushed)].sort((x, y) => x - y)); // in order, each once
    }
    const views = [viewOf(alice), viewOf(bob)];
    const [aliceView, bobView] = views as [Map<number, string>, Map<number, string>];
    expect([...aliceView.keys()].sort((x, y) => x - y)).toEqual(range(1, 2 * count));
    expect([...aliceView.entries()].sort(([x], [y]) => x - y)).toEqual(
      [...bobView.entries()].sort(([x], [y]) => x - y),
    );
    // Each sender's messages keep the order it sent them in.
    const aliceOrder = [...bobView.entries()]
      .sort(([x], [y]) => x - y)
      .map(([, text]) => text)
      .filter((t) => t.startsWith("a"));
    expect(aliceOrder).toEqual(range(1, count).map((i) => `a${i}`));
    alice.close();
    bob.close();
  });

  it("queues 200 messages for an offline receiver, delivers them in order once, and drops them once acked", async () => {
    const { alice, bob, bobId, chatId } = await pair();
    bob.close();
    await bob.closed;
    for (const i of range(1, 200)) await alice.send(chatId, `m${i}`);

    const back = await FrameDriver.connect(url);
    await back.login(bobId);
    await back.subscribe();
    await back.waitFor(() => back.isSynced(), "sync");
    expect(seqs(back.messages())).toEqual(range(1, 200));
    expect(texts(back.messages())).toEqual(range(1, 200).map((i) => `m${i}`));
    const complete = back.pushes.find((p) => p.push?.$case === "syncComplete");
    expect(complete?.push?.$case === "syncComplete" && complete.push.value.pushed).toBe(200);

    back.ack(chatId, 200);
    // Alice learns it was delivered.
    await alice.subscribe();
    await alice.waitFor(
      () => alice.receipts().some((r) => r.deviceId === bobId.deviceId && r.throughSeq === 200),
      "receipt",
    );
    // ...and so does anyone asking about the chat later, without a subscription.
    const { chat } = await alice.call({ $case: "getChat", value: { chatId } });
    expect(chat?.receipts).toContainEqual(
      expect.objectContaining({ userId: bobId.userId, deviceId: bobId.deviceId, throughSeq: 200 }),
    );
    back.close();
    await back.closed;

    // Acked: a new connection of bob's gets nothing again...
    const later = await FrameDriver.connect(url);
    await later.login(bobId);
    await later.subscribe();
    await later.waitFor(() => later.isSynced(), "sync");
    expect(later.messages()).toEqual([]);
    alice.close();
    later.close();

    // ...and dropped: the store holds none of the 200 any more.
    await target.server.stop();
    const store = await target.openStore();
    try {
      expect(await store.readMessages(chatId, 0, 1000)).toEqual([]);
      expect((await store.getChat(chatId))?.headSeq).toBe(200);
    } finally {
      await store.close();
      await target.server.restart();
    }
  });

  it("resumes a receiver from its last ack after a dropped connection", async () => {
    const { alice, bob, bobId, chatId } = await pair();
    await bob.subscribe();
    for (const i of range(1, 30)) await alice.send(chatId, `m${i}`);
    await bob.waitFor(() => bob.messages().length === 30, "30 messages");
    bob.ack(chatId, 12);
    await alice.subscribe();
    await alice.waitFor(() => alice.receipts().some((r) => r.throughSeq === 12), "ack landed");
    bob.socket.terminate();

    const back = await FrameDriver.connect(url);
    await back.login(bobId);
    await back.subscribe();
    await back.waitFor(() => back.isSynced(), "sync");
    expect(seqs(back.messages())).toEqual(range(13, 30));
    alice.close();
    back.close();
  });

  it("keeps every acked message and duplicates none when the server is SIGKILLed mid-stream and restarted", async () => {
    const { alice, bob, aliceId, bobId, chatId } = await pair();
    bob.close();
    const total = 300;
    const ids = range(1, total).map(() => newMessageId());
    const acked = new Map<number, number>();
    // A steady stream, 8 sends in flight, until the connection dies under it.
    let next = 0;
    const streamer = async (): Promise<void> => {
      while (next < total) {
        const i = next++;
        const id = ids[i];
        if (id === undefined) return;
        const answer = await alice.send(chatId, `k${i + 1}`, id).catch(() => undefined);
        if (answer === undefined) return;
        acked.set(i, answer.seq);
      }
    };
    const streaming = Promise.all(range(1, 8).map(() => streamer()));
    await alice.waitFor(() => acked.size >= 100, "100 acks before the crash");
    await target.server.kill();
    await streaming;
    expect(acked.size).toBeLessThan(total);
    expect(acked.size).toBeGreaterThan(0);
    await target.server.restart();

    const again = await FrameDriver.connect(url);
    await again.login(aliceId);
    // The client resends everything it has no seq for — and, to prove idempotency, everything else too.
    for (const [i, id] of ids.entries()) {
      const answer = await again.send(chatId, `k${i + 1}`, id);
      const before = acked.get(i);
      if (before !== undefined) expect(answer).toMatchObject({ seq: before, duplicate: true });
    }
    const receiver = await FrameDriver.connect(url);
    await receiver.login(bobId);
    await receiver.subscribe();
    await receiver.waitFor(() => receiver.isSynced(), "sync");
    expect(seqs(receiver.messages())).toEqual(range(1, total));
    expect(new Set(receiver.messages().map((m) => messageIdToHex(m.messageId))).size).toBe(total);
    expect(new Set(texts(receiver.messages()))).toEqual(new Set(range(1, total).map((i) => `k${i}`)));
    again.close();
    receiver.close();
  });
});
