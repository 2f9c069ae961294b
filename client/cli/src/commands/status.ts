/**
 * `remessenger status`: who this profile is, whether the server can be
 * reached right now (one brief attempt), and every unfinished outbox message
 * (queued, sent but not yet delivered, failed) with its state and reason.
 * Read-only: it does not send the outbox. Exit 0 whether online or not.
 *
 * With --watch it then stays connected (still read-only) and prints a line —
 * a JSON object of type "connection" with --json — at every change of state
 * or transport, and whenever a rung's health changes, until interrupted.
 */
import { type ConnectionStatus, type Messenger, type OutboxEntry, contentText } from "@remessenger/client-core";
import { type CommandContext, firstAttempt, withMessenger } from "../cli-session.ts";
import { connectionJson, connectionLine, transportsJson } from "../connection-line.ts";

const STATUS_ATTEMPT_MS = 3_000;
const MAX_LISTED = 1_000;

export async function statusCommand(context: CommandContext, options: { watch: boolean }): Promise<void> {
  await withMessenger(context, { subscribe: false, sendOutbox: false }, async (messenger, opened) => {
    const { profile } = opened;
    const attempt = await firstAttempt(context, messenger, STATUS_ATTEMPT_MS);
    const unfinished = await messenger.listOutbox({ states: ["queued", "sent", "failed"], limit: MAX_LISTED });
    const queued = await messenger.countOutbox("queued");
    const status = messenger.connection.value;
    const connection =
      attempt.kind === "connected"
        ? { state: "connected", transport: status.transport }
        : { state: "offline", transport: status.transport, reason: attempt.reason };
    const endpoints = {
      dohUrls: profile.dohUrls ?? [],
      resolver: profile.resolver === undefined ? undefined : `${profile.resolver.host}:${profile.resolver.port}`,
      tunnelZone: profile.tunnel?.zone,
    };
    const messages = unfinished.map((entry) => ({
      chatId: entry.chatId,
      messageId: entry.messageId,
      state: entry.state,
      seq: entry.seq,
      reason: entry.problem === undefined ? undefined : `${entry.problem.code}: ${entry.problem.message}`,
    }));
    const lines = [
      `user ${profile.userId} (${profile.displayName}), device ${profile.deviceId}`,
      `server ${profile.serverUrl}: ${connection.state}${connection.transport === undefined ? "" : ` (${connection.transport})`}${attempt.kind === "offline" ? ` — ${attempt.reason}` : ""}`,
      `tunnel: ${endpoints.tunnelZone ?? "none"}; DoH: ${endpoints.dohUrls.join(", ") || "the server's /dns-query"}; DNS resolver: ${endpoints.resolver ?? "the system's"}`,
      `outbox: ${queued} queued, ${count(unfinished, "sent")} sent and awaiting delivery, ${count(unfinished, "failed")} failed`,
      ...unfinished.map(describeEntry),
    ];
    context.output.print(
      {
        userId: profile.userId,
        deviceId: profile.deviceId,
        server: profile.serverUrl,
        ...endpoints,
        connection: { ...connection, transports: transportsJson(messenger.connection.value) },
        queued,
        messages,
      },
      lines.join("\n"),
    );
    if (options.watch) await watch(context, messenger);
  });
}

/** Prints the connection at each change until interrupted. */
async function watch(context: CommandContext, messenger: Messenger): Promise<void> {
  let shown = "";
  const show = (status: ConnectionStatus): void => {
    const json = connectionJson(status);
    // A line per change of state, transport, failure, queue or a rung's failures; not per retry tick.
    const key = JSON.stringify({
      ...json,
      nextRetryAtMs: undefined,
      transports: undefined,
      rungs: status.transports.map((r) => [r.kind, r.failures]),
    });
    if (key === shown) return;
    shown = key;
    context.output.status(json, connectionLine(status, Date.now()));
  };
  show(messenger.connection.value);
  const off = messenger.connection.subscribe(show);
  try {
    await new Promise<void>((resolve) => {
      if (context.signal.aborted) resolve();
      context.signal.addEventListener("abort", () => resolve(), { once: true });
    });
  } finally {
    off();
  }
}

function count(entries: readonly OutboxEntry[], state: OutboxEntry["state"]): number {
  return entries.filter((e) => e.state === state).length;
}

function describeEntry(entry: OutboxEntry): string {
  const text = contentText(entry.content) ?? "";
  const preview = text.length > 40 ? `${text.slice(0, 39)}…` : text;
  const seq = entry.seq === undefined ? "" : ` #${entry.seq}`;
  const reason = entry.problem === undefined ? "" : ` — ${entry.problem.code}: ${entry.problem.message}`;
  return `  ${entry.state.padEnd(6)} ${entry.chatId}${seq} ${entry.messageId} ${JSON.stringify(preview)}${reason}`;
}
