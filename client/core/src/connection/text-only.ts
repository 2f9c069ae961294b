/**
 * Text-only mode: when the only pipe that works is plain DNS (a few hundred
 * bytes per query through resolvers that may be slow), only text messages
 * go through. Anything else — attachments, calls — stays in the outbox with
 * a reason the user sees, and goes out once a better pipe is up.
 */
import type { Content } from "@remessenger/protocol";
import type { TransportKind } from "./transport.ts";

/** What plain DNS carries: text, and the small control messages the E2E layer needs to heal. */
const ALLOWED_ON_DNS: ReadonlySet<string> = new Set(["text", "sessionReset", "senderKeyRequest"]);

export const TEXT_ONLY_REASON = "waits for a better network: only text messages go over plain DNS";

/** Why `content` may not go over `kind` now, or undefined when it may. */
export function textOnlyRefusal(kind: TransportKind, content: Content): string | undefined {
  if (kind !== "dns") return undefined;
  const kindOfContent = content.body?.$case;
  return kindOfContent !== undefined && ALLOWED_ON_DNS.has(kindOfContent)
    ? undefined
    : `${describe(content)} ${TEXT_ONLY_REASON}`;
}

function describe(content: Content): string {
  const kind = content.body?.$case;
  return kind === undefined ? "this message" : `this ${kind} message`;
}
