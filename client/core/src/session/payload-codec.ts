/**
 * What a message's content is before it is sealed: helpers to build and read
 * a `Content`. Sealing and opening are end-to-end encrypted, always
 * (e2e/pairwise-sessions.ts, group/group-sessions.ts); there is no plaintext codec.
 */
import type { Content } from "@remessenger/protocol";

/** A text message as the user wrote it. */
export function textContent(text: string, composedAtMs: number): Content {
  return { body: { $case: "text", value: text }, composedAtMs };
}

/** The text of a content, or undefined when it carries no text. */
export function contentText(content: Content | undefined): string | undefined {
  return content?.body?.$case === "text" ? content.body.value : undefined;
}
