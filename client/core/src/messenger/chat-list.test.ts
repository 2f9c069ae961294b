import { describe, expect, it } from "vitest";
import { MemoryClientStore } from "../store/memory-client-store.ts";
import { ChatList, buildChatList } from "./chat-list.ts";
import { ALICE, ME, outboxRow, received } from "./test-records.ts";

const names = new Map([[ALICE, "Alice"]]);
const direct = { chatId: "c-direct", kind: "direct" as const, title: "", memberUserIds: [ME, ALICE] };
const group = { chatId: "c-group", kind: "group" as const, title: "Friends", memberUserIds: [ME, ALICE, "u-bob"] };

describe("buildChatList", () => {
  it("names a direct chat after the other user and a group by its title, newest activity first", () => {
    const items = buildChatList(
      [direct, group],
      [
        {
          chatId: "c-direct",
          lastReceived: received("c-direct", 1),
          lastOwn: undefined,
          unreadCount: 1,
          readThroughSeq: 0,
        },
        {
          chatId: "c-group",
          lastReceived: received("c-group", 9),
          lastOwn: undefined,
          unreadCount: 3,
          readThroughSeq: 6,
        },
      ],
      { me: ME, names },
    );
    expect(items.map((i) => [i.title, i.unreadCount, i.lastMessage?.text])).toEqual([
      ["Friends", 3, "hello 9"],
      ["Alice", 1, "hello 1"],
    ]);
  });

  it("takes the newer of the last received and the last own message, with the own delivery state", () => {
    const own = outboxRow("c-direct", "b".repeat(32), { state: "sent", seq: 5 });
    const [item] = buildChatList(
      [direct],
      [{ chatId: "c-direct", lastReceived: received("c-direct", 4), lastOwn: own, unreadCount: 0, readThroughSeq: 4 }],
      { me: ME, names },
    );
    expect(item?.lastMessage).toMatchObject({ isOwn: true, seq: 5, state: "sent" });
    expect(item?.ownDeliveryState).toBe("sent");
  });

  it("lists a known chat without messages last", () => {
    const items = buildChatList(
      [direct, group],
      [
        {
          chatId: "c-group",
          lastReceived: received("c-group", 1),
          lastOwn: undefined,
          unreadCount: 1,
          readThroughSeq: 0,
        },
      ],
      { me: ME, names },
    );
    expect(items.map((i) => i.chatId)).toEqual(["c-group", "c-direct"]);
    expect(items[1]?.lastMessage).toBeUndefined();
  });
});

describe("ChatList", () => {
  it("rebuilds from the store: unread counts drop when the read mark moves", async () => {
    const store = new MemoryClientStore();
    await store.saveProfile({
      serverUrl: "ws://x",
      userId: ME,
      deviceId: "d-me",
      displayName: "me",
      registeredAtMs: 0,
    });
    await store.saveChats([direct]);
    for (let seq = 1; seq <= 3; seq += 1) await store.saveReceived(received("c-direct", seq));
    const errors: unknown[] = [];
    const list = new ChatList(store, ME, (e) => errors.push(e));
    const seen: number[] = [];
    list.items.subscribe((items) => seen.push(items[0]?.unreadCount ?? -1));
    await list.invalidate();
    await store.markRead("c-direct", 2);
    await list.invalidate();
    expect(seen).toEqual([3, 1]);
    expect(errors).toEqual([]);
  });
});
