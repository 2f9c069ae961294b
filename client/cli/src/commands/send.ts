/**
 * `remessenger send CHAT_ID TEXT [--wait] [--timeout MS]`.
 *
 * The message is in the outbox (on disk) before anything is sent. Then:
 * - without --wait, one short attempt: if the server is unreachable, the
 *   message stays queued and `listen` (or the next `send`) sends it — exit 0;
 * - with --wait, retries until the server answers with the seq, or until
 *   --timeout (exit 1, the message stays queued).
 * A refusal (unknown chat, too large...) marks the message failed: exit 2.
 */
import { ErrorCode, type Messenger, type OutboxEntry, isError, isId } from "@remessenger/client-core";
import { CliError, EXIT_FAILURE, EXIT_USAGE, usageError } from "../cli-error.ts";
import { type CommandContext, FIRST_ATTEMPT_TIMEOUT_MS, firstAttempt, withMessenger } from "../cli-session.ts";

export const DEFAULT_WAIT_TIMEOUT_MS = 30_000;
/** How often `send` looks at the outbox row, which another process (`listen`) may settle first. */
const OUTBOX_POLL_MS = 200;
/** Refusals that mean the input was wrong. */
const INPUT_REFUSALS = new Set(["INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "TOO_LARGE", "ALREADY_EXISTS"]);

export interface SendOptions {
  wait: boolean;
  timeoutMs: number;
}

export async function sendCommand(
  context: CommandContext,
  chatId: string,
  texts: readonly string[],
  options: SendOptions,
): Promise<void> {
  if (!isId("chat", chatId)) throw usageError(`not a chat id: ${chatId}`);
  if (texts.length === 0 || texts.some((text) => text.length === 0)) throw usageError("the message text is empty");
  await withMessenger(context, { subscribe: false, sendOutbox: true }, async (messenger) => {
    const deadlineAt = Date.now() + (options.wait ? options.timeoutMs : FIRST_ATTEMPT_TIMEOUT_MS);
    if (!(await messenger.hasChat(chatId))) await checkChat(context, messenger, chatId);
    // Sealed and stored in order; the chat's messages go out in that order, so the last one settles last.
    let queued: OutboxEntry | undefined;
    for (const text of texts) queued = await messenger.send(chatId, text);
    if (queued === undefined) return;
    const entry = await settled(context, messenger, queued.messageId, deadlineAt, options.wait);
    if (texts.length > 1) context.output.note(`${texts.length} messages queued in order; the last one:`);
    report(context, messenger, entry, options);
  });
}

/** Asks the server about a chat this profile has not seen; refuses unknown chats, tolerates being offline. */
async function checkChat(context: CommandContext, messenger: Messenger, chatId: string): Promise<void> {
  const attempt = await firstAttempt(context, messenger, FIRST_ATTEMPT_TIMEOUT_MS);
  if (attempt.kind === "offline") {
    context.output.note(`cannot check chat ${chatId} while offline (${attempt.reason}); queuing it anyway`);
    return;
  }
  try {
    await messenger.fetchChat(chatId, { signal: context.signal });
  } catch (error) {
    if (isError(error, ErrorCode.ERROR_CODE_NOT_FOUND) || isError(error, ErrorCode.ERROR_CODE_PERMISSION_DENIED)) {
      throw usageError(`unknown chat ${chatId}: ${error.message}`);
    }
    context.output.note(
      `cannot check chat ${chatId} (${error instanceof Error ? error.message : String(error)}); queuing it anyway`,
    );
  }
}

/**
 * Resolves with the message once it left "queued" (sent, delivered, failed),
 * or still queued at the deadline — or, without --wait, as soon as the first
 * connection attempt failed.
 */
function settled(
  context: CommandContext,
  messenger: Messenger,
  messageId: string,
  deadlineAt: number,
  isWaiting: boolean,
): Promise<OutboxEntry> {
  return new Promise<OutboxEntry>((resolve, reject) => {
    let isDone = false;
    let poll: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (isDone) return;
      isDone = true;
      clearTimeout(timer);
      clearTimeout(poll);
      offOutbox();
      offConnection();
      context.signal.removeEventListener("abort", finish);
      messenger.outboxEntry(messageId).then((entry) => {
        if (entry === undefined) reject(new CliError(`message ${messageId} vanished from the outbox`));
        else resolve(entry);
      }, reject);
    };
    const check = (): void => {
      messenger.outboxEntry(messageId).then((entry) => {
        if (entry !== undefined && entry.state !== "queued") finish();
        else if (!isDone) poll = setTimeout(check, OUTBOX_POLL_MS);
      }, reject);
    };
    const timer = setTimeout(finish, Math.max(0, deadlineAt - Date.now()));
    const offOutbox = messenger.events.on("outbox", (entry) => {
      if (entry.messageId === messageId && entry.state !== "queued") finish();
    });
    let hasSaidOffline = false;
    const offConnection = messenger.events.on("connection", (status) => {
      if (status.state === "refused" || (!isWaiting && status.state === "offline")) finish();
      else if (status.state === "offline" && !hasSaidOffline) {
        hasSaidOffline = true;
        const seconds = Math.round((deadlineAt - Date.now()) / 1000);
        context.output.note(
          `cannot reach the server (${status.lastFailure?.reason ?? "offline"}); retrying for up to ${seconds} s`,
        );
      }
    });
    context.signal.addEventListener("abort", finish, { once: true });
    if (messenger.connection.value.state === "refused") finish();
    else check();
  });
}

function report(context: CommandContext, messenger: Messenger, entry: OutboxEntry, options: SendOptions): void {
  const { output } = context;
  const base = { chatId: entry.chatId, messageId: entry.messageId, state: entry.state };
  switch (entry.state) {
    case "sent":
    case "delivered":
      output.print(
        { ...base, seq: entry.seq },
        `${entry.state}: ${entry.chatId} #${entry.seq ?? "?"} (message ${entry.messageId})`,
      );
      return;
    case "failed": {
      const reason = entry.problem === undefined ? "refused" : `${entry.problem.code}: ${entry.problem.message}`;
      output.print({ ...base, reason }, `failed: ${entry.chatId} (message ${entry.messageId})`);
      const isInput = entry.problem !== undefined && INPUT_REFUSALS.has(entry.problem.code);
      throw new CliError(`the server refused the message: ${reason}`, {
        exitCode: isInput ? EXIT_USAGE : EXIT_FAILURE,
        code: entry.problem?.code ?? "FAILED",
      });
    }
    case "queued": {
      const reason =
        entry.problem?.message ?? messenger.connection.value.lastFailure?.reason ?? "no answer from the server yet";
      output.print({ ...base, reason }, `queued: ${entry.chatId} (message ${entry.messageId})`);
      if (options.wait) {
        throw new CliError(
          `not sent within ${options.timeoutMs} ms (${reason}); it stays queued and will be sent later`,
          {
            code: "UNAVAILABLE",
          },
        );
      }
      output.note(
        `not sent yet (${reason}); the message is queued and will be sent by "remessenger listen" or the next send`,
      );
      return;
    }
  }
}
