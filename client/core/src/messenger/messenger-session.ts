/**
 * The seam between the messenger API and the session that keeps a device
 * connected: exactly the members the Messenger uses, nothing more. One
 * adapter (client-session-adapter.ts) fits today's ClientSession to it; a
 * reworked session only has to fit this interface.
 *
 * Invariants: a MessengerSession is started at most once and stopped at most
 * once; the Messenger makes a fresh one (on the same stores) for every
 * resume. The E2E-state methods (`knownUser`, `acceptIdentity`,
 * `refreshGroup`, `receiveGroupOperation`, `maintainPreKeys`) take the
 * session's E2E lock themselves, so callers never hold it.
 */
import type { ConnectionStatus } from "../connection/connection-state.ts";
import type { KnownUser } from "../e2e/device-directory.ts";
import type { GroupChangeRequest } from "../group/group-admin.ts";
import type { GroupChange, OperationOutcome } from "../group/group-chain.ts";
import type { TypedEmitter } from "../runtime/typed-emitter.ts";
import type { SessionEvents, WaitOptions } from "../session/client-session.ts";
import type { RequestKind, RequestValue, ResponseValue } from "../session/connection.ts";
import type { OutboxEntry } from "../store/client-store.ts";
import type { GroupState, Message } from "@remessenger/protocol";

export interface MessengerSession {
  readonly events: Pick<TypedEmitter<SessionEvents>, "on">;
  readonly status: ConnectionStatus;
  start(): Promise<void>;
  stop(): Promise<void>;
  send(chatId: string, text: string): Promise<OutboxEntry>;
  request<K extends RequestKind>(kind: K, value: RequestValue<K>, options: WaitOptions): Promise<ResponseValue<K>>;
  createGroup(title: string, memberUserIds: readonly string[], options: WaitOptions): Promise<string>;
  changeGroup(chatId: string, change: GroupChangeRequest, options: WaitOptions): Promise<GroupChange>;
  /** Stops storing pushes (the one being stored finishes); acks of stored ones still go out. */
  stopReceiving(): void;
  /** Sends the pending acks and waits for the server to take them. */
  confirmAcks(options: WaitOptions): Promise<void>;
  /** A user's devices and their trust, fetched from the server when `isRefresh` (or unknown). */
  knownUser(userId: string, isRefresh: boolean): Promise<KnownUser | undefined>;
  /** Trusts the user's current identity keys (after comparing the safety number). */
  acceptIdentity(userId: string): Promise<KnownUser>;
  /** Catches up with the server's group chain (`isForced`: even when checked lately). */
  refreshGroup(chatId: string, isForced: boolean): Promise<void>;
  /** Verifies and applies one membership operation as the session does on receipt. */
  receiveGroupOperation(message: Message): Promise<OperationOutcome>;
  /** The group as this device verified it; undefined for a group it does not know. */
  groupState(chatId: string): Promise<GroupState | undefined>;
  /** Publishes or tops up this device's prekeys when the server lacks them. */
  maintainPreKeys(): Promise<void>;
}

/** Makes a fresh, unstarted session on the messenger's stores and keys. */
export type MessengerSessionFactory = (options: MessengerSessionOptions) => MessengerSession;

/** What a command or a screen asks of one session. */
export interface MessengerSessionOptions {
  /** Receive pushes (default true); one-shot commands turn it off. */
  subscribe?: boolean;
  /** Send the outbox whenever connected (default true). */
  sendOutbox?: boolean;
  /** Look for messages other processes put in the outbox this often (ms). */
  outboxPollMs?: number;
}
