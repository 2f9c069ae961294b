import { describe, expect, it } from "vitest";
import { compareViews, isShown, viewOfOutbox, viewOfReceived } from "./message-view.ts";
import { ALICE, ME, outboxRow, received } from "./test-records.ts";

const names = new Map([[ALICE, "Alice"]]);

describe("message views", () => {
  it("shows another user's text as delivered, with the sender's name", () => {
    const view = viewOfReceived(received("c1", 3), { me: ME, names });
    expect(view).toMatchObject({ seq: 3, text: "hello 3", senderName: "Alice", isOwn: false, state: "delivered" });
  });

  it("shows an unreadable record as undecryptable with its reason, and never a control record", () => {
    const unreadable = received("c1", 4, { content: undefined, problem: "undecryptable: no-session" });
    expect(isShown(unreadable)).toBe(true);
    expect(viewOfReceived(unreadable, { me: ME, names })).toMatchObject({
      state: "undecryptable",
      reason: "undecryptable: no-session",
      text: "",
    });
    expect(isShown(received("c1", 5, { content: undefined }))).toBe(false);
    const senderKey = received("c1", 6, {
      content: {
        body: {
          $case: "senderKey",
          value: { chatId: "c1", epoch: 1, iteration: 0, chainKey: new Uint8Array(), signingKey: new Uint8Array() },
        },
        composedAtMs: 0,
      },
    });
    expect(isShown(senderKey)).toBe(false);
  });

  it("gives an own message its outbox state and the failure reason", () => {
    const failed = outboxRow("c1", "a".repeat(32), {
      state: "failed",
      problem: { code: "TOO_LARGE", message: "too big", atMs: 1 },
    });
    expect(viewOfOutbox(failed, ME, names)).toMatchObject({
      isOwn: true,
      state: "failed",
      reason: "TOO_LARGE: too big",
    });
    const echoed = received("c1", 7, { senderUserId: ME, messageId: "a".repeat(32) });
    const sent = outboxRow("c1", "a".repeat(32), { state: "delivered", seq: 7 });
    expect(viewOfReceived(echoed, { me: ME, names, own: sent })).toMatchObject({
      seq: 7,
      state: "delivered",
      isOwn: true,
    });
  });

  it("orders by seq, messages without one last by time", () => {
    const a = viewOfReceived(received("c1", 2), { me: ME, names });
    const b = viewOfReceived(received("c1", 1), { me: ME, names });
    const c = viewOfOutbox(outboxRow("c1", "c".repeat(32)), ME, names);
    expect([c, a, b].sort(compareViews).map((v) => v.seq)).toEqual([1, 2, undefined]);
  });
});
