/**
 * `remessenger listen [--exit-after N]`: stays connected (reconnecting by
 * itself), prints each message received from other devices, sends the outbox
 * — also messages a concurrent `send` on the same profile queued — and shows
 * connection changes (stderr, or JSON lines on stdout with --json).
 *
 * JSON lines have a `type`: "message" (chatId, seq, messageId, sender,
 * senderDevice, text, state "received" — or "undecryptable" with text null
 * and a `reason` — serverTimeMs), "session" (event "healing": this device
 * could not decrypt a message and reset the session with its sender;
 * "reset": another device did so with this one; "key-requested": this
 * device has no sender key of a group member's device for an epoch and asked
 * it for the key; "key-sent" / "key-refused": another device asked for this
 * one's key, which was handed over or refused; chatId, user, device, epoch,
 * reason), "group" (a membership change or rotation of a group: chatId, seq,
 * change — "created", "added", "removed", "left", "promoted", "demoted",
 * "renamed", "rotated" — actor, users, epoch, rotation (new sender keys),
 * members, admins; or change "refused" with the reason), "outbox" (chatId,
 * messageId, state, seq, reason) or "connection" (state, transport, reason,
 * nextRetryAtMs, queued, and `transports`: each rung's health).
 *
 * With --exit-after N it stops taking messages after the Nth (later ones stay
 * on the server for next time), confirms the acks, and exits 0.
 */
import {
  type ConnectionStatus,
  type GroupEvent,
  type IncomingMessage,
  type Messenger,
  type OutboxEntry,
  drop,
} from "@remessenger/client-core";
import { CliError } from "../cli-error.ts";
import { type CommandContext, REQUEST_TIMEOUT_MS, withMessenger } from "../cli-session.ts";
import { connectionJson, connectionLine } from "../connection-line.ts";

/** How often `listen` looks for messages other processes put in the outbox. */
export const LISTEN_OUTBOX_POLL_MS = 300;

export interface ListenOptions {
  exitAfter: number | undefined;
}

export async function listenCommand(context: CommandContext, options: ListenOptions): Promise<void> {
  const done = Promise.withResolvers<void>();
  // It may settle (refused) before anyone awaits it; the await below still sees the rejection.
  done.promise.catch(() => undefined);
  const setup = (messenger: Messenger): void => {
    let received = 0;
    messenger.events.on("message", (event) => {
      if (event.isOwnDevice) return;
      received += 1;
      printMessage(context, event);
      if (options.exitAfter !== undefined && received >= options.exitAfter) {
        // Synchronously, so no later message is stored and acked without being shown.
        messenger.stopReceiving();
        drop(confirmAndFinish(context, messenger, done.resolve), done.reject);
      }
    });
    messenger.events.on("outbox", (entry) => {
      printOutbox(context, entry);
    });
    messenger.events.on("healing", (event) => {
      context.output.status(
        {
          type: "session",
          event: "healing",
          chatId: event.chatId,
          user: event.userId,
          device: event.deviceId,
          reason: event.reason,
        },
        `[session] could not decrypt a message from ${event.userId} (device ${event.deviceId}: ${event.reason}); starting a new session with it`,
      );
    });
    messenger.events.on("sessionReset", (event) => {
      context.output.status(
        {
          type: "session",
          event: "reset",
          chatId: event.chatId,
          user: event.fromUserId,
          device: event.fromDeviceId,
          reason: event.reason,
        },
        `[session] ${event.fromUserId} (device ${event.fromDeviceId}) could not decrypt a message (${event.reason}) and started a new session`,
      );
    });
    messenger.events.on("senderKeyRequested", (event) => {
      context.output.status(
        {
          type: "session",
          event: "key-requested",
          chatId: event.chatId,
          user: event.userId,
          device: event.deviceId,
          epoch: event.epoch,
          reason: event.reason,
        },
        `[session] no sender key of ${event.userId} (device ${event.deviceId}) for epoch ${event.epoch} in ${event.chatId}; asked that device for it`,
      );
    });
    messenger.events.on("senderKeyRequest", (event) => {
      const reason = event.kind === "refused" ? `${event.reason}: ${event.detail}` : undefined;
      context.output.status(
        {
          type: "session",
          event: event.kind === "answered" ? "key-sent" : "key-refused",
          chatId: event.chatId,
          user: event.fromUserId,
          device: event.fromDeviceId,
          epoch: event.epoch,
          reason,
        },
        event.kind === "answered"
          ? `[session] ${event.fromUserId} (device ${event.fromDeviceId}) asked for our sender key of epoch ${event.epoch} in ${event.chatId}; handed it over`
          : `[session] ${event.fromUserId} (device ${event.fromDeviceId}) asked for our sender key of epoch ${event.epoch} in ${event.chatId}; refused (${reason ?? ""})`,
      );
    });
    messenger.events.on("group", (event) => {
      printGroup(context, event);
    });
    let shown = "";
    messenger.events.on("connection", (status) => {
      // One line per state (or new failure), not per change of the queued count.
      const key = `${status.state}/${status.transport ?? "-"}/${status.lastFailure?.atMs ?? 0}`;
      if (key !== shown) printConnection(context, status);
      shown = key;
      if (status.state === "refused") {
        done.reject(new CliError(`the server refused this device: ${status.lastFailure?.reason ?? "unknown reason"}`));
      }
    });
  };
  const session = { subscribe: true, sendOutbox: true, outboxPollMs: LISTEN_OUTBOX_POLL_MS };
  await withMessenger(context, { ...session, setup }, async () => {
    const onSignal = (): void => {
      done.resolve();
    };
    context.signal.addEventListener("abort", onSignal, { once: true });
    if (options.exitAfter === 0) done.resolve();
    try {
      await done.promise;
    } finally {
      context.signal.removeEventListener("abort", onSignal);
    }
  });
}

async function confirmAndFinish(context: CommandContext, messenger: Messenger, finish: () => void): Promise<void> {
  try {
    await messenger.confirmAcks({ timeoutMs: REQUEST_TIMEOUT_MS, signal: context.signal });
  } catch (error) {
    // Stored already; an unconfirmed ack only means the server may send it again (and we skip it).
    context.output.note(`acks not confirmed: ${error instanceof Error ? error.message : String(error)}`);
  }
  finish();
}

function printMessage(context: CommandContext, { message, senderDeviceId }: IncomingMessage): void {
  const isReadable = message.state !== "undecryptable";
  context.output.print(
    {
      type: "message",
      chatId: message.chatId,
      seq: message.seq,
      messageId: message.messageId,
      sender: message.senderUserId,
      senderDevice: senderDeviceId,
      text: isReadable ? message.text : null,
      state: isReadable ? "received" : "undecryptable",
      reason: isReadable ? undefined : message.reason,
      serverTimeMs: message.sentAtMs,
    },
    `${message.chatId} #${message.seq ?? "?"} ${message.senderUserId}: ${isReadable ? message.text : `(could not be decrypted: ${message.reason ?? "unreadable"})`}`,
  );
}

function printGroup(context: CommandContext, event: GroupEvent): void {
  if (event.kind === "rejected") {
    context.output.print(
      {
        type: "group",
        chatId: event.chatId,
        seq: event.seq,
        change: "refused",
        actor: event.actorUserId,
        reason: `${event.reason}: ${event.detail}`,
      },
      `[group] ${event.chatId} #${event.seq} an operation by ${event.actorUserId} was refused: ${event.reason} (${event.detail})`,
    );
    return;
  }
  const { change } = event;
  const users = change.userIds.length === 0 ? "" : ` ${change.userIds.join(", ")}`;
  const keys = change.isRotation ? `, epoch ${change.epoch}: new keys` : "";
  context.output.print(
    {
      type: "group",
      chatId: change.chatId,
      seq: change.seq,
      change: change.change,
      actor: change.actorUserId,
      users: change.userIds,
      title: change.title,
      epoch: change.epoch,
      rotation: change.isRotation,
      members: change.members,
      admins: change.admins,
    },
    `[group] ${change.chatId} #${change.seq} ${change.actorUserId} ${change.change}${users}${keys} (${change.members.length} members)`,
  );
}

function printOutbox(context: CommandContext, entry: OutboxEntry): void {
  const reason = entry.problem === undefined ? undefined : `${entry.problem.code}: ${entry.problem.message}`;
  const where = entry.seq === undefined ? entry.chatId : `${entry.chatId} #${entry.seq}`;
  context.output.print(
    { type: "outbox", chatId: entry.chatId, messageId: entry.messageId, state: entry.state, seq: entry.seq, reason },
    `  [${entry.state}] ${where} (message ${entry.messageId})${reason === undefined ? "" : ` — ${reason}`}`,
  );
}

function printConnection(context: CommandContext, status: ConnectionStatus): void {
  context.output.status(connectionJson(status), connectionLine(status, Date.now()));
}
