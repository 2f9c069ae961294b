/**
 * What travels in a message's `payload`: the one place that turns what the
 * user wrote (a `Content`) into bytes for the server and back. Today it is
 * the plain encoded Content; end-to-end encryption replaces this codec (per
 * chat sessions, device payloads) without touching the session or outbox.
 *
 * Sealing happens at send time, not when the message enters the outbox, so a
 * retry can seal with the keys current then.
 */
import { RemessengerError } from "../wire/errors.ts";
import { Content, type DevicePayload, ErrorCode, type Message } from "../wire/proto.ts";

export interface SealedPayload {
  payload: Uint8Array;
  devicePayloads: DevicePayload[];
}

export interface PayloadCodec {
  seal(chatId: string, content: Content): Promise<SealedPayload>;
  /** Reads a received message's content; rejects with INVALID_ARGUMENT when it cannot. */
  open(message: Message): Promise<Content>;
}

/** Plaintext Content, until E2E encryption lands. */
export const plaintextPayloadCodec: PayloadCodec = {
  seal(_chatId, content) {
    return Promise.resolve({ payload: Content.encode(content).finish(), devicePayloads: [] });
  },
  open(message) {
    try {
      return Promise.resolve(Content.decode(message.payload));
    } catch (cause) {
      return Promise.reject(
        new RemessengerError(
          ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
          `unreadable payload in ${message.chatId} #${message.seq}`,
          { cause },
        ),
      );
    }
  },
};

/** A text message as the user wrote it. */
export function textContent(text: string, composedAtMs: number): Content {
  return { body: { $case: "text", value: text }, composedAtMs };
}

/** The text of a content, or undefined when it carries no text. */
export function contentText(content: Content | undefined): string | undefined {
  return content?.body?.$case === "text" ? content.body.value : undefined;
}
