/**
 * Child process of the crash test in sqlite-store.test.ts: appends to a few
 * chats as fast as it can and prints one line per message whose append
 * resolved ("chatId seq messageIdHex"). The test kill -9s it mid-stream and
 * checks every printed message survived.
 */
import { randomBytes } from "node:crypto";
import { ChatKind } from "@remessenger/protocol";
import { SqliteStore } from "./sqlite-store.ts";
import type { MessageDraft } from "./store.ts";

const CHATS = 8;
const dataDir = process.argv[2];
if (dataDir === undefined) throw new Error("usage: sqlite-crash-child.ts DATA_DIR");

const store = await SqliteStore.open({ dataDir });
const chatIds = Array.from({ length: CHATS }, (_, i) => `c-crash-${i}`);
for (const chatId of chatIds) {
  await store.createChat(
    {
      chatId,
      kind: ChatKind.CHAT_KIND_GROUP,
      title: "",
      memberUserIds: ["u-a"],
      createdByUserId: "u-a",
      createdAtMs: 1,
    },
    ["d-a"],
  );
}

function newDraft(): MessageDraft {
  return {
    messageId: new Uint8Array(randomBytes(16)),
    senderUserId: "u-a",
    senderDeviceId: "d-b",
    serverTimeMs: Date.now(),
    payload: new Uint8Array(randomBytes(64)),
    devicePayloads: [],
  };
}

// One writer loop per chat, each with batches of 1..20 that sometimes resend
// an id from its previous batch, so the group commits mix chats and duplicates.
async function writeForever(chatId: string): Promise<never> {
  let previous: MessageDraft[] = [];
  for (;;) {
    const batch = Array.from({ length: 1 + Math.floor(Math.random() * 20) }, newDraft);
    const resent = previous[0];
    if (resent !== undefined && Math.random() < 0.3) batch.push(resent);
    const outcomes = await store.appendMessages(chatId, batch);
    const lines = outcomes.map((outcome, i) => {
      const id = Buffer.from(batch[i]?.messageId ?? new Uint8Array()).toString("hex");
      return `${chatId} ${outcome.seq} ${id}\n`;
    });
    process.stdout.write(lines.join(""));
    previous = batch;
  }
}

await Promise.all(chatIds.map(writeForever));
