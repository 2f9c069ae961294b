import { describe, expect, it } from "vitest";
import { MemoryClientStore } from "../store/memory-client-store.ts";
import { textContent } from "../session/payload-codec.ts";
import { viewOfOutbox } from "./message-view.ts";
import { Timeline, mergeViews } from "./timeline.ts";
import { ME, outboxRow, received } from "./test-records.ts";

const CHAT = "c-1";

async function storeWith(count: number): Promise<MemoryClientStore> {
  const store = new MemoryClientStore();
  for (let seq = 1; seq <= count; seq += 1) await store.saveReceived(received(CHAT, seq));
  return store;
}

describe("mergeViews", () => {
  it("keeps one view per message, the later one, and the seq it had", () => {
    const id = "a".repeat(32);
    const sent = viewOfOutbox(outboxRow(CHAT, id, { state: "sent", seq: 4 }), ME, new Map());
    const withProblem = viewOfOutbox(outboxRow(CHAT, id, { state: "delivered" }), ME, new Map());
    const merged = mergeViews([sent], [withProblem]);
    expect(merged).toHaveLength(1);
    expect(merged[0]).toMatchObject({ state: "delivered", seq: 4 });
  });
});

describe("Timeline", () => {
  it("opens on the newest page and pages backward to the chat's start", async () => {
    const timeline = new Timeline(await storeWith(25), CHAT, ME, 10);
    await timeline.open();
    expect(timeline.state.value.messages.map((m) => m.seq)).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    expect(timeline.state.value.hasOlder).toBe(true);
    expect(await timeline.loadOlder()).toBe(true);
    expect(await timeline.loadOlder()).toBe(true);
    expect(timeline.state.value.messages.map((m) => m.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(timeline.state.value.hasOlder).toBe(false);
    expect(await timeline.loadOlder()).toBe(false);
  });

  it("pages forward over what was stored after it opened, and takes live updates in place", async () => {
    const store = await storeWith(3);
    const timeline = new Timeline(store, CHAT, ME, 10);
    await timeline.open();
    await store.saveReceived(received(CHAT, 4));
    await store.saveReceived(received(CHAT, 5));
    expect(await timeline.loadNewer()).toBe(2);
    const entry = await store.addToOutbox({
      messageId: "b".repeat(32),
      chatId: CHAT,
      content: textContent("hi", 9_000),
      createdAtMs: 9_000,
    });
    timeline.outbox(entry);
    expect(timeline.state.value.messages.at(-1)).toMatchObject({ isOwn: true, state: "queued", text: "hi" });
    timeline.outbox({ ...entry, state: "sent", seq: 6 });
    timeline.received(received(CHAT, 7));
    timeline.received(received("other-chat", 8));
    expect(timeline.state.value.messages.map((m) => [m.seq, m.state])).toEqual([
      [1, "delivered"],
      [2, "delivered"],
      [3, "delivered"],
      [4, "delivered"],
      [5, "delivered"],
      [6, "sent"],
      [7, "delivered"],
    ]);
  });

  it("shows this device's unsent messages on the newest page", async () => {
    const store = await storeWith(2);
    await store.addToOutbox({
      messageId: "c".repeat(32),
      chatId: CHAT,
      content: textContent("later", 1),
      createdAtMs: 1,
    });
    const timeline = new Timeline(store, CHAT, ME, 10);
    await timeline.open();
    expect(timeline.state.value.messages.map((m) => m.text)).toEqual(["hello 1", "hello 2", "later"]);
  });
});

describe("Timeline at the chat's start", () => {
  it("knows a full page that reaches seq 1 has nothing older", async () => {
    const timeline = new Timeline(await storeWith(20), CHAT, ME, 10);
    await timeline.open();
    expect(await timeline.loadOlder()).toBe(true);
    expect(timeline.state.value.hasOlder).toBe(false);
    expect(await timeline.loadOlder()).toBe(false);
    expect(timeline.state.value.messages).toHaveLength(20);
  });
});
