import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ManualClock, settle } from "../../../test/manual-clock.ts";
import { RemessengerError, ErrorCode, type SendMessageResponse } from "@remessenger/protocol";
import { silentLogger } from "../runtime/logger.ts";
import type { OutboxEntry } from "../store/client-store.ts";
import { MemoryClientStore } from "../store/memory-client-store.ts";
import { OutboxSender } from "./outbox-sender.ts";

const CHAT_A = "caaaaaaaaaaaaaaaaaaaaaaaaaa";
const CHAT_B = "cbbbbbbbbbbbbbbbbbbbbbbbbbb";

type Reply = { kind: "ok" } | { kind: "error"; error: Error };

/** A server stand-in for one unit: answers each send as the test scripts it, and checks the order rule. */
class ScriptedServer {
  readonly seqs = new Map<string, number>();
  readonly appended: Array<{ chatId: string; messageId: string; seq: number }> = [];
  readonly inFlight = new Map<string, number>();
  maxInFlightPerChat = 0;
  private readonly waiting: Array<{
    entry: OutboxEntry;
    resolve: (r: SendMessageResponse) => void;
    reject: (e: Error) => void;
  }> = [];
  /** When set, answers at once with this; otherwise sends wait for `answer()`. */
  autoReply: ((entry: OutboxEntry) => Reply) | undefined;

  send = (entry: OutboxEntry): Promise<SendMessageResponse> => {
    const count = (this.inFlight.get(entry.chatId) ?? 0) + 1;
    this.inFlight.set(entry.chatId, count);
    this.maxInFlightPerChat = Math.max(this.maxInFlightPerChat, count);
    return new Promise((resolve, reject) => {
      this.waiting.push({ entry, resolve, reject });
      if (this.autoReply !== undefined) this.answer(this.autoReply(entry));
    });
  };

  get pending(): number {
    return this.waiting.length;
  }

  answer(reply: Reply = { kind: "ok" }): void {
    const next = this.waiting.shift();
    if (next === undefined) throw new Error("no send waiting");
    const { entry } = next;
    this.inFlight.set(entry.chatId, (this.inFlight.get(entry.chatId) ?? 1) - 1);
    if (reply.kind === "error") {
      next.reject(reply.error);
      return;
    }
    const existing = this.appended.find((a) => a.messageId === entry.messageId);
    if (existing !== undefined) {
      next.resolve({ seq: existing.seq, duplicate: true, serverTimeMs: 0 });
      return;
    }
    const seq = (this.seqs.get(entry.chatId) ?? 0) + 1;
    this.seqs.set(entry.chatId, seq);
    this.appended.push({ chatId: entry.chatId, messageId: entry.messageId, seq });
    next.resolve({ seq, duplicate: false, serverTimeMs: 0 });
  }
}

function setup(options: { maxConcurrentChats?: number } = {}) {
  const store = new MemoryClientStore();
  const clock = new ManualClock();
  const server = new ScriptedServer();
  const updates: OutboxEntry[] = [];
  const errors: unknown[] = [];
  let isConnected = true;
  const sender = new OutboxSender({
    store,
    sender: { send: server.send, canSend: () => isConnected },
    onUpdate: (entry) => updates.push(entry),
    onError: (error) => errors.push(error),
    clock,
    random: () => 0.5,
    logger: silentLogger,
    ...options,
  });
  let n = 0;
  const add = (chatId: string) =>
    store.addToOutbox({
      messageId: (++n).toString(16).padStart(32, "0"),
      chatId,
      content: { body: { $case: "text", value: `m${n}` }, composedAtMs: 0 },
      createdAtMs: 0,
    });
  return {
    store,
    clock,
    server,
    updates,
    errors,
    sender,
    add,
    setConnected: (value: boolean) => {
      isConnected = value;
    },
  };
}

const unavailable = () => new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "busy", { retryAfterMs: 2_000 });

describe("OutboxSender", () => {
  it("sends a chat's messages one at a time, in the order they were written", async () => {
    const t = setup();
    const first = await t.add(CHAT_A);
    const second = await t.add(CHAT_A);
    await t.sender.flushAll();
    await settle();
    expect(t.server.pending).toBe(1);
    t.server.answer();
    await settle();
    expect(t.server.pending).toBe(1);
    t.server.answer();
    await settle();
    expect(t.server.appended.map((a) => a.messageId)).toEqual([first.messageId, second.messageId]);
    expect(t.updates.map((u) => [u.messageId, u.state, u.seq])).toEqual([
      [first.messageId, "sent", 1],
      [second.messageId, "sent", 2],
    ]);
    expect(t.server.maxInFlightPerChat).toBe(1);
  });

  it("works on different chats in parallel", async () => {
    const t = setup();
    await t.add(CHAT_A);
    await t.add(CHAT_B);
    await t.sender.flushAll();
    await settle();
    expect(t.server.pending).toBe(2);
  });

  it("also sends a message added while its chat is being worked on", async () => {
    const t = setup();
    await t.add(CHAT_A);
    t.sender.kick(CHAT_A);
    await settle();
    const late = await t.add(CHAT_A);
    t.sender.kick(CHAT_A);
    t.server.answer();
    await settle();
    t.server.answer();
    await settle();
    expect(t.server.appended.at(-1)?.messageId).toBe(late.messageId);
    expect(await t.store.countOutbox("queued")).toBe(0);
  });

  it("fails a refused message with its code and moves on to the next", async () => {
    const t = setup();
    const refused = await t.add(CHAT_A);
    const next = await t.add(CHAT_A);
    await t.sender.flushAll();
    await settle();
    t.server.answer({ kind: "error", error: new RemessengerError(ErrorCode.ERROR_CODE_TOO_LARGE, "too big") });
    await settle();
    t.server.answer();
    await settle();
    expect((await t.store.getOutboxEntry(refused.messageId))?.problem).toMatchObject({
      code: "TOO_LARGE",
      message: "too big",
    });
    expect((await t.store.getOutboxEntry(refused.messageId))?.state).toBe("failed");
    expect((await t.store.getOutboxEntry(next.messageId))?.state).toBe("sent");
  });

  it("keeps a message queued with the reason on a transient failure, and retries after the server's hint", async () => {
    const t = setup();
    const entry = await t.add(CHAT_A);
    const behind = await t.add(CHAT_A);
    await t.sender.flushAll();
    await settle();
    t.server.answer({ kind: "error", error: unavailable() });
    await settle();
    const queued = await t.store.getOutboxEntry(entry.messageId);
    expect(queued).toMatchObject({ state: "queued", problem: { code: "UNAVAILABLE", message: "busy" } });
    // The chat waits: the message behind it is not sent out of order.
    expect(t.server.pending).toBe(0);
    await t.clock.advance(1_999);
    expect(t.server.pending).toBe(0);
    await t.clock.advance(1);
    expect(t.server.pending).toBe(1);
    t.server.answer();
    await settle();
    t.server.answer();
    await settle();
    expect(t.server.appended.map((a) => a.messageId)).toEqual([entry.messageId, behind.messageId]);
    expect((await t.store.getOutboxEntry(entry.messageId))?.problem).toBeUndefined();
  });

  it("sends nothing without a connection, and everything on the flush after connecting", async () => {
    const t = setup();
    t.setConnected(false);
    await t.add(CHAT_A);
    t.sender.kick(CHAT_A);
    await t.sender.flushAll();
    await settle();
    expect(t.server.pending).toBe(0);
    t.setConnected(true);
    await t.sender.flushAll();
    await settle();
    expect(t.server.pending).toBe(1);
  });

  it("works on at most maxConcurrentChats chats at once and gets to the others afterwards", async () => {
    const t = setup({ maxConcurrentChats: 1 });
    await t.add(CHAT_A);
    await t.add(CHAT_B);
    await t.sender.flushAll();
    await settle();
    expect(t.server.pending).toBe(1);
    t.server.answer();
    await settle();
    expect(t.server.pending).toBe(1);
    t.server.answer();
    await settle();
    expect(await t.store.countOutbox("sent")).toBe(2);
  });

  it("whatever the failures, ends with every message sent once or failed, and each chat in written order", async () => {
    const reply = fc.oneof(
      { weight: 5, arbitrary: fc.constant<Reply>({ kind: "ok" }) },
      { weight: 2, arbitrary: fc.constant<Reply>({ kind: "error", error: unavailable() }) },
      { weight: 1, arbitrary: fc.constant<Reply>({ kind: "error", error: new Error("socket closed") }) },
      {
        weight: 1,
        arbitrary: fc.constant<Reply>({
          kind: "error",
          error: new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, "no chat"),
        }),
      },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.boolean(), { minLength: 1, maxLength: 12 }),
        fc.array(reply, { maxLength: 40 }),
        async (chats, replies) => {
          const t = setup();
          const written: OutboxEntry[] = [];
          for (const isA of chats) written.push(await t.add(isA ? CHAT_A : CHAT_B));
          const script = [...replies];
          t.server.autoReply = () => script.shift() ?? { kind: "ok" };
          await t.sender.flushAll();
          // Retries come from the timer while connected; an hour of it is plenty.
          for (let i = 0; i < 60 && (await t.store.countOutbox("queued")) > 0; i++) await t.clock.advance(60_000);

          expect(await t.store.countOutbox("queued")).toBe(0);
          expect(t.server.maxInFlightPerChat).toBeLessThanOrEqual(1);
          expect(new Set(t.server.appended.map((a) => a.messageId)).size).toBe(t.server.appended.length);
          for (const chatId of [CHAT_A, CHAT_B]) {
            const order = written.filter((e) => e.chatId === chatId).map((e) => e.messageId);
            const appended = t.server.appended.filter((a) => a.chatId === chatId).map((a) => a.messageId);
            expect(appended).toEqual(order.filter((id) => appended.includes(id)));
          }
          for (const entry of await t.store.listOutbox({ limit: 100 })) {
            if (entry.state === "failed") expect(entry.problem?.code).toBe("NOT_FOUND");
            else expect(entry.seq).toBe(t.server.appended.find((a) => a.messageId === entry.messageId)?.seq);
          }
          expect(t.errors).toEqual([]);
        },
      ),
      { numRuns: 60 },
    );
  });
});
