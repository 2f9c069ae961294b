/**
 * What a session tells its application: the event map of
 * `ClientSession.events`, and the one way every session unit reports a
 * failure it handled (logged and emitted as "problem", never swallowed).
 */
import type { ChatAck } from "@remessenger/protocol";
import type { ConnectionStatus } from "../connection/connection-state.ts";
import type { GroupChange } from "../group/group-chain.ts";
import type { Logger } from "../runtime/logger.ts";
import type { TypedEmitter } from "../runtime/typed-emitter.ts";
import type { OutboxEntry, ReceivedMessage } from "../store/client-store.ts";

export interface ReceivedMessageEvent {
  message: ReceivedMessage;
  /** True for this device's own messages, which the server delivers to it as well. */
  isOwnDevice: boolean;
}

export interface SessionEvents {
  /** The connection status changed. */
  connection: ConnectionStatus;
  /** A message was received and stored (before its ack goes out). */
  message: ReceivedMessageEvent;
  /** An outbox message changed: added, sent, delivered, failed, or a new problem. */
  outbox: OutboxEntry;
  /** The server pushed everything that queued up while this device was away. */
  synced: { pushed: number };
  /** Acks went out. */
  acked: ChatAck[];
  /** Another device could not decrypt our messages and started a new session with this device. */
  sessionReset: { chatId: string; fromUserId: string; fromDeviceId: string; reason: string };
  /** This device could not decrypt a message and reset the session with its sender. */
  healing: { chatId: string; userId: string; deviceId: string; reason: string };
  /**
   * This device holds no sender key of a member device for a group epoch (its
   * distribution was lost) and asked that device for it, pairwise.
   */
  senderKeyRequested: { chatId: string; userId: string; deviceId: string; epoch: number; reason: string };
  /** Another member device asked this one for its sender key: handed to it, or refused with the reason. */
  senderKeyRequest: SenderKeyRequestEvent;
  /** A group's membership operation joined its chain (a change, a rotation), or was refused with its reason. */
  group: GroupEvent;
  /** Something failed that the session handled (store errors, bad payloads); for logs and UIs. */
  problem: { context: string; error: unknown };
}

export type GroupEvent =
  | { kind: "change"; change: GroupChange }
  | { kind: "rejected"; chatId: string; seq: number; actorUserId: string; reason: string; detail: string };

export type SenderKeyRequestEvent =
  | { kind: "answered"; chatId: string; fromUserId: string; fromDeviceId: string; epoch: number; iteration: number }
  | {
      kind: "refused";
      chatId: string;
      fromUserId: string;
      fromDeviceId: string;
      epoch: number;
      reason: string;
      detail: string;
    };

export type SessionEmitter = TypedEmitter<SessionEvents>;

/** A failure the session handled: logged, and shown to the application as a "problem" event. */
export function reportProblem(events: SessionEmitter, logger: Logger, context: string, error: unknown): void {
  logger.error({ err: error, context }, `failed while ${context}`);
  events.emit("problem", { context, error });
}
