/**
 * The messenger API: what apps and the CLI call. One Messenger per opened
 * profile; it owns the session that keeps the device connected (made by a
 * MessengerSessionFactory, so the session's insides stay behind one seam)
 * and offers decoded content — chats, timelines, contacts, groups,
 * verification, linking, the connection state — through plain methods and
 * the small Observable contract.
 *
 * Invariants:
 * - Lifecycle: idle → running ⇄ suspended → stopped. `suspend` stops the
 *   session (nothing received is lost: the server keeps it); `resume` makes a
 *   fresh session on the same stores and keys, any number of times. A stopped
 *   messenger never runs again.
 * - Events and the connection state survive session changes: listeners
 *   attach to the Messenger, which forwards from whichever session runs.
 * - Nothing here decodes bytes or touches keys: the session does, behind
 *   MessengerSession; this layer turns stored records into views.
 */
import type { ConnectionStatus } from "../connection/connection-state.ts";
import { initialConnectionStatus } from "../connection/connection-state.ts";
import type { DeviceSigner } from "../crypto/device-signer.ts";
import type { GroupChangeRequest } from "../group/group-admin.ts";
import type { GroupChange } from "../group/group-chain.ts";
import { type Clock, systemClock } from "../runtime/clock.ts";
import { type Logger, silentLogger } from "../runtime/logger.ts";
import { drop } from "../runtime/drop.ts";
import { TypedEmitter } from "../runtime/typed-emitter.ts";
import type { SessionEvents } from "../session/client-session.ts";
import type {
  ChatSummary,
  ClientStore,
  DeviceProfile,
  OutboxEntry,
  OutboxQuery,
  OutboxState,
  ReceivedMessage,
} from "../store/client-store.ts";
import { ChatList, type ChatListItem } from "./chat-list.ts";
import { type DirectChat, fetchChat, fetchChats, openDirectChat } from "./chats.ts";
import { type Contact, listContacts, refreshContacts } from "./contacts.ts";
import { type FirstAttempt, firstAttempt } from "./first-attempt.ts";
import { type GroupMembership, groupMembership } from "./groups.ts";
import { type ApprovalToken, approveLink, decodeLinkCode } from "./linking.ts";
import { type DisplayNames, type MessageView, isShown, viewOfReceived } from "./message-view.ts";
import type { MessengerSession, MessengerSessionFactory, MessengerSessionOptions } from "./messenger-session.ts";
import { type MessengerLifecycle, SessionLifecycle } from "./session-lifecycle.ts";
import { ObservableValue, type Observable } from "./observable.ts";
import { OpenTimelines, type TimelineHandle } from "./open-timelines.ts";
import { type Verification, verifyUser } from "./verification.ts";

export { MAX_OPEN_TIMELINES, type TimelineHandle } from "./open-timelines.ts";

/** A message received and stored, decoded. */
export interface IncomingMessage {
  message: MessageView;
  senderDeviceId: string;
  /** Sent by this very device (the server delivers a device's own messages back to it). */
  isOwnDevice: boolean;
}

/** The session's events the messenger forwards as they are (outbox changes, group changes, repairs, problems). */
type ForwardedEvent =
  "outbox" | "group" | "healing" | "sessionReset" | "senderKeyRequested" | "senderKeyRequest" | "problem";

/** What a messenger tells its listeners; the same across suspend and resume. */
export interface MessengerEvents extends Pick<SessionEvents, ForwardedEvent> {
  /** The connection status changed (also `connection.value`). */
  connection: ConnectionStatus;
  /** A message from the server was stored: another user's, or this user's from any of their devices. */
  message: IncomingMessage;
  /** The messenger started, suspended, resumed or stopped. */
  lifecycle: MessengerLifecycle;
}

/** Deadline and cancellation of one call that asks the server. */
export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface MessengerOptions {
  store: ClientStore;
  profile: DeviceProfile;
  signer: DeviceSigner;
  /** Makes each session (the first at start, a fresh one at every resume). */
  sessions: MessengerSessionFactory;
  /** What every session of this messenger does (receive, send the outbox). */
  session?: MessengerSessionOptions;
  clock?: Clock;
  logger?: Logger;
  /** Default deadline of a call that asks the server (10 s when omitted). */
  requestTimeoutMs?: number;
  /** Messages per timeline page (50 when omitted). */
  pageSize?: number;
}

export class Messenger {
  /** Every event of the running session, decoded; attach before `start` to miss nothing. */
  readonly events: TypedEmitter<MessengerEvents>;
  readonly profile: DeviceProfile;
  private readonly store: ClientStore;
  private readonly signer: DeviceSigner;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly requestTimeoutMs: number;
  private readonly connectionValue: ObservableValue<ConnectionStatus>;
  private readonly life: SessionLifecycle;
  private readonly chatList: ChatList;
  private readonly timelines: OpenTimelines;
  /** Display names by user id, for views made in an event's turn (no store read there). */
  private names: DisplayNames = new Map();
  /** The chat list is kept current only once someone asked for it (a CLI command never does). */
  private isChatListWatched = false;

  constructor(options: MessengerOptions) {
    this.store = options.store;
    this.profile = options.profile;
    this.signer = options.signer;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.timelines = new OpenTimelines(this.store, this.profile.userId, options.pageSize ?? 50);
    const onListenerError = (error: unknown): void => {
      this.logger.error({ err: error }, "a messenger listener threw");
    };
    this.events = new TypedEmitter(onListenerError);
    this.connectionValue = new ObservableValue(initialConnectionStatus(this.clock.nowMs()), { onListenerError });
    this.chatList = new ChatList(this.store, this.profile.userId, (error) => {
      this.reportProblem("building the chat list", error);
    });
    this.life = new SessionLifecycle(options.sessions, options.session ?? {}, {
      attach: (session) => this.attach(session),
      beforeRun: () => this.loadNames(),
      afterRun: () => {
        this.refreshSoon();
      },
    });
    this.life.state.subscribe((state) => {
      this.events.emit("lifecycle", state);
    });
  }

  /** The connection: state, pipe, failure and retry, queued count, and each rung's health (`transports`). */
  get connection(): Observable<ConnectionStatus> {
    return this.connectionValue;
  }

  /** idle → running ⇄ suspended → stopped. */
  get lifecycle(): Observable<MessengerLifecycle> {
    return this.life.state;
  }

  /** Starts the first session; resolves once it is connecting. */
  start(): Promise<void> {
    return this.life.start();
  }

  /** Stops for good: the session stops (what is being stored is finished and acked). */
  stop(): Promise<void> {
    return this.life.stop();
  }

  /** Stops the session until `resume` (an app going to the background); no-op unless running. */
  suspend(): Promise<void> {
    return this.life.suspend();
  }

  /** Runs a fresh session on the same stores (an app back in the foreground), any number of times; no-op unless suspended. */
  resume(): Promise<void> {
    return this.life.resume();
  }

  /** Waits for the running session's first attempt: connected, or offline with the reason. */
  firstAttempt(timeoutMs: number, signal?: AbortSignal): Promise<FirstAttempt> {
    return firstAttempt(this.connectionValue, this.clock, timeoutMs, signal);
  }

  /** Writes a text message: in the outbox (on disk) when this resolves, sent as soon as the connection allows. */
  send(chatId: string, text: string): Promise<OutboxEntry> {
    return this.running().send(chatId, text);
  }

  /** One outbox message as stored now (another process on the profile may have moved it). */
  outboxEntry(messageId: string): Promise<OutboxEntry | undefined> {
    return this.store.getOutboxEntry(messageId);
  }

  /** Outbox messages, oldest first. */
  listOutbox(query: OutboxQuery): Promise<OutboxEntry[]> {
    return this.store.listOutbox(query);
  }

  countOutbox(state: OutboxState): Promise<number> {
    return this.store.countOutbox(state);
  }

  /** The live chat list: last message, unread count and own delivery state per chat, newest first. */
  chats(): Observable<readonly ChatListItem[]> {
    this.isChatListWatched = true;
    this.refreshSoon();
    return this.chatList.items;
  }

  /** Resolves once the chat list reflects the store as it is now. */
  refreshChatList(): Promise<void> {
    this.isChatListWatched = true;
    return this.chatList.invalidate();
  }

  /** A chat's timeline, opened on its newest page, updated live until closed. */
  timeline(chatId: string): Promise<TimelineHandle> {
    return this.timelines.open(chatId);
  }

  /** Marks the chat read through `throughSeq` (its newest message when omitted); the read mark only moves forward. */
  async markRead(chatId: string, throughSeq?: number): Promise<boolean> {
    const through = throughSeq ?? (await this.store.highestReceivedSeqs()).get(chatId) ?? 0;
    const hasMoved = await this.store.markRead(chatId, through);
    if (hasMoved && this.isChatListWatched) await this.chatList.invalidate();
    return hasMoved;
  }

  /** The chats this user is in, from the server (and cached here). */
  async fetchChats(options: CallOptions = {}): Promise<ChatSummary[]> {
    const chats = await fetchChats(this.running(), this.store, this.wait(options));
    this.refreshSoon();
    return chats;
  }

  /** One chat from the server; rejects with its error (NOT_FOUND, PERMISSION_DENIED) for a chat not this user's. */
  fetchChat(chatId: string, options: CallOptions = {}): Promise<ChatSummary | undefined> {
    return fetchChat(this.running(), this.store, chatId, this.wait(options));
  }

  /** The chats known here (cached), for offline use. */
  knownChats(): Promise<ChatSummary[]> {
    return this.store.listChats();
  }

  /** Whether this device knows the chat (saved, or a message arrived in it). */
  hasChat(chatId: string): Promise<boolean> {
    return this.store.hasChat(chatId);
  }

  /** The direct chat with `userId`: made now, or the existing one. */
  async openDirectChat(userId: string, options: CallOptions & { title?: string } = {}): Promise<DirectChat> {
    const chat = await openDirectChat(this.running(), this.store, userId, options.title ?? "", this.wait(options));
    this.refreshSoon();
    return chat;
  }

  /** Fetches the names of everyone this user shares a chat with, and caches them. */
  async refreshContacts(options: CallOptions = {}): Promise<void> {
    await refreshContacts(this.running(), this.store, this.profile.userId, this.wait(options));
    await this.loadNames();
    this.refreshSoon();
  }

  /** The contacts known here, with display names and shared chats. */
  contacts(): Promise<Contact[]> {
    return listContacts(this.store, this.profile.userId);
  }

  /** Creates a group with this user as its admin; resolves with its chat id. */
  createGroup(title: string, memberUserIds: readonly string[], options: CallOptions = {}): Promise<string> {
    return this.running().createGroup(title, memberUserIds, this.wait(options));
  }

  /** add, remove, promote, demote, rename, rotate, leave: one signed operation of this device. */
  changeGroup(chatId: string, change: GroupChangeRequest, options: CallOptions = {}): Promise<GroupChange> {
    return this.running().changeGroup(chatId, change, this.wait(options));
  }

  /** The group's membership as this device verified it, after catching up with the server. */
  groupMembership(chatId: string, options: CallOptions = {}): Promise<GroupMembership> {
    return groupMembership(this.running(), chatId, this.wait(options));
  }

  /** The safety number with `userId` and their devices' trust; with `accept`, trusts their current keys. */
  verify(userId: string, options: { accept?: boolean } = {}): Promise<Verification> {
    return verifyUser(this.running(), this.profile.userId, userId, options.accept === true);
  }

  /** Signs the approval of a new device's link code (rejects a malformed code with LinkFormatError). */
  approveLink(code: string): Promise<ApprovalToken> {
    return approveLink(this.signer, this.profile, decodeLinkCode(code), this.clock.nowMs());
  }

  /** Publishes or tops up this device's prekeys (a new or linked device, once connected). */
  publishPreKeys(): Promise<void> {
    return this.running().maintainPreKeys();
  }

  /** Stops taking in messages (the one being stored finishes); for "take N and exit". */
  stopReceiving(): void {
    this.running().stopReceiving();
  }

  /** Sends pending acks and waits for the server to take them. */
  confirmAcks(options: CallOptions = {}): Promise<void> {
    return this.running().confirmAcks(this.wait(options));
  }

  private wait(options: CallOptions): { timeoutMs: number; signal?: AbortSignal } {
    return {
      timeoutMs: options.timeoutMs ?? this.requestTimeoutMs,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    };
  }

  private running(): MessengerSession {
    return this.life.current();
  }

  /** Wires a session's events to the messenger's; returns the unwiring. */
  private attach(session: MessengerSession): () => void {
    const { events } = session;
    const emit = <K extends keyof MessengerEvents>(name: K, value: MessengerEvents[K]): void => {
      this.events.emit(name, value);
    };
    this.connectionValue.set(session.status);
    const detach = [
      events.on("connection", (status) => {
        this.connectionValue.set(status);
        emit("connection", status);
      }),
      events.on("message", ({ message, isOwnDevice }) => {
        this.onMessage(message, isOwnDevice);
      }),
      events.on("outbox", (entry) => {
        emit("outbox", entry);
        this.timelines.outbox(entry);
        this.refreshSoon();
      }),
      events.on("group", (value) => {
        emit("group", value);
        this.refreshSoon();
      }),
      events.on("healing", (value) => emit("healing", value)),
      events.on("sessionReset", (value) => emit("sessionReset", value)),
      events.on("senderKeyRequested", (value) => emit("senderKeyRequested", value)),
      events.on("senderKeyRequest", (value) => emit("senderKeyRequest", value)),
      events.on("problem", (value) => emit("problem", value)),
    ];
    return () => {
      for (const off of detach) off();
    };
  }

  /**
   * Shown at once, in the session's event turn: a listener may stop receiving
   * right there (take N messages and exit) before the next one is stored.
   */
  private onMessage(record: ReceivedMessage, isOwnDevice: boolean): void {
    if (isShown(record)) {
      const message = viewOfReceived(record, { me: this.profile.userId, names: this.names });
      this.events.emit("message", { message, senderDeviceId: record.senderDeviceId, isOwnDevice });
    }
    if (!this.timelines.isEmpty)
      drop(this.timelines.received(record), (error) => this.reportProblem("updating a timeline", error));
    this.refreshSoon();
  }

  private refreshSoon(): void {
    if (!this.isChatListWatched) return;
    drop(this.chatList.invalidate(), (error) => this.reportProblem("building the chat list", error));
  }

  private reportProblem(context: string, error: unknown): void {
    this.events.emit("problem", { context, error });
  }

  private async loadNames(): Promise<void> {
    this.names = new Map((await this.store.listContacts()).map((c) => [c.userId, c.displayName]));
  }
}
