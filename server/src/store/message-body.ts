/**
 * How both adapters keep a message at rest: the protobuf `Message` without its
 * chatId and seq. The chat owns those (they are the row's key, or the hash field
 * in Redis, where Lua assigns the seq and cannot encode protobuf), and they are
 * filled back in on read, so a stored body never disagrees with its position.
 */
import { Message } from "@remessenger/protocol";
import type { MessageDraft } from "./store.ts";

export function encodeMessageBody(draft: MessageDraft): Uint8Array {
  return Message.encode({
    chatId: "",
    seq: 0,
    messageId: draft.messageId,
    senderUserId: draft.senderUserId,
    senderDeviceId: draft.senderDeviceId,
    serverTimeMs: draft.serverTimeMs,
    payload: draft.payload,
    devicePayloads: draft.devicePayloads,
    ...(draft.groupOperation === undefined ? {} : { groupOperation: draft.groupOperation }),
  }).finish();
}

export function decodeMessageBody(chatId: string, seq: number, body: Uint8Array): Message {
  return { ...Message.decode(body), chatId, seq };
}
