/**
 * `remessenger contacts`: the users you share a chat with, with their names.
 * Fetched from the server and cached; offline, the cache is shown with a note.
 */
import { type CommandContext, FIRST_ATTEMPT_TIMEOUT_MS, firstAttempt, withMessenger } from "../cli-session.ts";

export async function contactsCommand(context: CommandContext): Promise<void> {
  await withMessenger(context, { subscribe: false, sendOutbox: false }, async (messenger) => {
    const attempt = await firstAttempt(context, messenger, FIRST_ATTEMPT_TIMEOUT_MS);
    if (attempt.kind === "connected") {
      await messenger.refreshContacts({ signal: context.signal });
    } else {
      context.output.note(`offline (${attempt.reason}); showing the contacts known here`);
    }
    const rows = await messenger.contacts();
    context.output.print(
      { contacts: rows },
      rows.length > 0 ? rows.map((r) => `${r.userId}  ${r.displayName}`).join("\n") : "no contacts yet",
    );
  });
}
