/**
 * The client session: the imperative shell that keeps one device connected
 * and its messages flowing. The decisions live in pure pieces — Inbox
 * (what to store, what to ack), backoff, reduceConnection, OutboxSender's
 * ordering — and this class wires them to a Transport, a ClientStore and a
 * Clock.
 *
 * Invariants:
 * - A message the user writes is in the store before anything is sent
 *   (`send` resolves only then), and is retried on every connection until
 *   the server answers with its seq.
 * - A received message is stored before it is acked; one at or below the
 *   chat's highest stored seq is not stored again but is acked. Acks are
 *   cumulative per chat, batched, with request id 0.
 * - After any drop the session reconnects by itself with backoff and jitter,
 *   logs in, subscribes and flushes the outbox; the server resumes from its
 *   cursor, so nothing is lost or shown twice.
 * - Every wait has a deadline; a ping with a deadline catches silent stalls.
 * - Every failure shows in `status` (ConnectionStatus) with its reason.
 * - Every message is end-to-end encrypted (E2eCodec); there is no plaintext
 *   path. A message is sealed once — when it enters the outbox, or at its
 *   first send when sessions must be fetched — and the ratchet step commits
 *   with the outbox row, so retries send the same bytes and no ratchet moves
 *   twice for one message. A message that does not decrypt is stored with its
 *   reason (shown, never dropped), and the session with its sender is reset
 *   from a fresh prekey so the next message gets through.
 * - Groups (GroupCodec): a message is sealed once for all members with this
 *   device's sender key; before it leaves, the key of its epoch reaches every
 *   member device (pairwise control messages in the group, never shown).
 *   Membership operations are verified and applied in the group's order and
 *   shown as `group` events, refused ones with their reason. A message that
 *   does not open for lack of its sender's key is shown with its reason and
 *   the key is asked of the sending device (pairwise, rate-limited like
 *   healing); such requests from others are answered only for entitled
 *   members.
 */
import { type DeviceSigner } from "../crypto/device-signer.ts";
import {
  ConnectionMonitor,
  type ConnectionFailure,
  type ConnectionStatus,
  isFinal,
  isLoggedIn,
} from "../connection/connection-state.ts";
import { isSwitchingTransports } from "../connection/ladder-transports.ts";
import { TypedEmitter } from "../runtime/typed-emitter.ts";
import {
  type ClientStore,
  type DeviceProfile,
  type E2eWrite,
  type OutboxEntry,
  type ReceivedMessage,
  toChatSummary,
  StaleE2eStateError,
} from "../store/client-store.ts";
import { OutboxSender } from "../outbox/outbox-sender.ts";
import {
  CLOSE_GOING_AWAY,
  CLOSE_NORMAL,
  type TransportCloseReason,
  type TransportFactory,
  type TransportKind,
} from "../connection/transport.ts";
import { textOnlyRefusal } from "../connection/text-only.ts";
import { webSocketTransportFactory } from "../connection/websocket-transport.ts";
import {
  DevicesChangedError,
  RemessengerError,
  assertNever,
  errorCodeName,
  isError,
  equalBytes,
  isId,
  messageIdToHex,
  newMessageId,
  MAX_ACKS_PER_REQUEST,
  MAX_MESSAGE_BYTES,
  selectX25519Provider,
  ChatKind,
  Content,
  ErrorCode,
  SendMessageRequest,
  type X25519Provider,
  type ChatAck,
  type Message,
  type Receipt,
  type SenderKeyRequest,
  type ServerPush,
} from "@remessenger/protocol";
import { type BackoffPolicy, DEFAULT_BACKOFF, backoffDelay } from "../runtime/backoff.ts";
import { type Clock, deadline, pause, raceAbort, systemClock } from "../runtime/clock.ts";
import { Connection, type RequestKind, type RequestValue, type ResponseValue } from "./connection.ts";
import { loginDevice } from "./device-auth.ts";
import { drop } from "../runtime/drop.ts";
import { Inbox } from "./inbox.ts";
import { type Logger, silentLogger } from "../runtime/logger.ts";
import type { Ed25519Provider } from "../crypto/device-signer.ts";
import { selectEd25519Provider } from "../crypto/select-ed25519-provider.ts";
import type { DeviceIdentity } from "../e2e/session-setup.ts";
import type { MlKemProvider } from "../crypto/ml-kem.ts";
import {
  E2eCodec,
  type E2eServer,
  IdentityChangedError,
  NeedsServerError,
  type Sealed,
  type SignedPreKeyPolicy,
} from "../e2e/e2e-payload-codec.ts";
import { DEFAULT_GRACE_WINDOW, type GraceWindow } from "../group/epoch-window.ts";
import { type GroupAdminPort, type GroupChangeRequest, changeGroup, createGroup } from "../group/group-admin.ts";
import { type GroupChange, GroupCodec, type GroupServer } from "../group/group-codec.ts";
import { KeyRequestThrottle } from "../group/key-request.ts";
import { textContent } from "./payload-codec.ts";

export interface SessionTiming {
  /** Opening the pipe and getting the hello. */
  connectTimeoutMs: number;
  /** Default deadline of each request. */
  requestTimeoutMs: number;
  /** A ping goes out this long after the previous one was answered. */
  pingIntervalMs: number;
  /** A ping unanswered this long drops the connection (silent stall). */
  pingTimeoutMs: number;
  /** A ping unanswered this long marks the connection degraded. */
  degradedAfterMs: number;
  /**
   * The server silent this long while a request waits for its answer: ping at
   * once, with `stallPingTimeoutMs` as the deadline, instead of waiting for
   * the next keep-alive. So a path blackholed under a sending user is found
   * in seconds, while an idle connection still pings rarely.
   */
  stallAfterMs: number;
  stallPingTimeoutMs: number;
  /** A connection up this long resets the backoff when it drops. */
  stableAfterMs: number;
  /** Messages processed before an ack goes out even while more are arriving. */
  ackBatchMax: number;
  /** Look for messages other processes put in the outbox this often (undefined: never). */
  outboxPollMs: number | undefined;
  backoff: BackoffPolicy;
}

export const DEFAULT_TIMING: SessionTiming = {
  connectTimeoutMs: 10_000,
  requestTimeoutMs: 15_000,
  pingIntervalMs: 20_000,
  pingTimeoutMs: 10_000,
  degradedAfterMs: 3_000,
  stallAfterMs: 1_500,
  stallPingTimeoutMs: 3_000,
  stableAfterMs: 10_000,
  ackBatchMax: 256,
  outboxPollMs: undefined,
  backoff: DEFAULT_BACKOFF,
};

/** Pushes waiting to be stored; beyond this the connection is dropped (the server resends). */
export const MAX_INBOUND_QUEUE = 20_000;

export interface ClientSessionOptions {
  /** Who this device is and where its server is. */
  profile: DeviceProfile;
  signer: DeviceSigner;
  store: ClientStore;
  /** The pipe; a WebSocket to `profile.serverUrl` when omitted. */
  transports?: TransportFactory;
  /** This device's end-to-end keys (from its key vault). */
  e2e: E2eKeyMaterial;
  clock?: Clock;
  /** Uniform in [0, 1); for backoff jitter. */
  random?: () => number;
  logger?: Logger;
  /** Receive pushes (default true). One-shot senders and status checks turn it off. */
  subscribe?: boolean;
  /** Send the outbox whenever connected (default true). */
  sendOutbox?: boolean;
  /** How long after a group's rotation its previous epoch is still accepted (time and messages). */
  groupWindow?: GraceWindow;
  timing?: Partial<SessionTiming>;
  /** Signed prekey rotation (weekly, replaced keys kept 30 days, when omitted). */
  signedPreKeys?: Partial<SignedPreKeyPolicy>;
}

export interface E2eKeyMaterial {
  identity: DeviceIdentity;
  /** 32 bytes that encrypt the E2E state (sessions, prekeys) in the store. */
  storageKey: Uint8Array;
  /** Providers; selected for the platform at start() when omitted. */
  x25519?: X25519Provider;
  ed25519?: Ed25519Provider;
  mlKem?: MlKemProvider;
  /** Test hook: every ratchet and prekey pair made (like SSLKEYLOGFILE). */
  onKeyMade?: (kind: string, pair: { publicKey: Uint8Array; privateKey: Uint8Array }) => void;
}

/** Optimistic E2E state writes retried this often when another process moved the state. */
const MAX_STALE_RETRIES = 8;
/** A send refused with DEVICES_CHANGED is sealed again and resent at most this often in a row. */
export const MAX_RESEAL_ROUNDS = 3;
/** How often a logged-in session checks whether a prekey is due (rotation, expired grace); the login checks too. */
export const PREKEY_UPKEEP_INTERVAL_MS = 60 * 60 * 1000;
/** A session with a device is reset at most this often (a burst of undecryptable messages heals once). */
export const HEAL_INTERVAL_MS = 60_000;
/** The scope of a throttle kept per device, whatever the chat (no chat id is "*"). */
const ANY_CHAT = "*";

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

export interface WaitOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

interface Received {
  record: ReceivedMessage;
  isNew: boolean;
  heal: string | undefined;
  /** A group's key distribution: stored, never shown. */
  isControl: boolean;
  /** A group message refused for lack of its sender's key of this epoch: ask the sender for it. */
  missingKeyEpoch?: number;
}

type OpenedFor =
  | { kind: "content"; content: Content; writes: E2eWrite[] }
  | { kind: "undecryptable"; reason: string; detail: string; canHeal: boolean; missingKeyEpoch?: number }
  | { kind: "control" };

type ServeOutcome =
  { kind: "lost"; failure: ConnectionFailure; wasStable: boolean } | { kind: "refused"; failure: ConnectionFailure };

export class ClientSession {
  readonly events: TypedEmitter<SessionEvents>;
  private readonly profile: DeviceProfile;
  private readonly signer: DeviceSigner;
  private readonly store: ClientStore;
  private readonly transports: TransportFactory;
  private readonly e2eKeys: E2eKeyMaterial;
  private codecValue: E2eCodec | undefined;
  private groupsValue: GroupCodec | undefined;
  private readonly groupWindow: GraceWindow;
  /**
   * Session resets this device started: one per peer device per interval, in
   * whichever chat (a pairwise session is the device's, not the chat's), by
   * the same bounded rule as the asking for sender keys.
   */
  private readonly heals = new KeyRequestThrottle(HEAL_INTERVAL_MS);
  private readonly keyRequests = new KeyRequestThrottle(HEAL_INTERVAL_MS);
  /** Answers to one device's key requests in one group, at most as often as a device may ask. */
  private readonly keyAnswers = new KeyRequestThrottle(HEAL_INTERVAL_MS);
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly logger: Logger;
  private readonly isSubscribing: boolean;
  private readonly isSendingOutbox: boolean;
  private readonly timing: SessionTiming;
  private readonly signedPreKeys: Partial<SignedPreKeyPolicy> | undefined;
  private readonly monitor: ConnectionMonitor;
  private readonly outbox: OutboxSender;
  private readonly lifetime = new AbortController();
  private inbox = new Inbox();
  /** The logged-in connection, if any. */
  private live: Connection | undefined;
  private readonly inbound: Array<{ connection: Connection; push: ServerPush }> = [];
  private inboundDrain: Promise<void> | undefined;
  private isReceivingStopped = false;
  private loop: Promise<void> | undefined;
  private wake: AbortController | undefined;
  private cancelPoll: (() => void) | undefined;
  private queuedCountRequest = 0;
  /** Set when the transport ladder asked to move to a better pipe: reconnect at once. */
  private switchingTo: TransportKind | undefined;

  constructor(options: ClientSessionOptions) {
    this.profile = options.profile;
    this.signer = options.signer;
    this.store = options.store;
    this.transports = options.transports ?? webSocketTransportFactory({ serverUrl: options.profile.serverUrl });
    this.e2eKeys = options.e2e;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.logger = options.logger ?? silentLogger;
    this.isSubscribing = options.subscribe ?? true;
    this.isSendingOutbox = options.sendOutbox ?? true;
    this.groupWindow = options.groupWindow ?? DEFAULT_GRACE_WINDOW;
    this.timing = { ...DEFAULT_TIMING, ...options.timing };
    this.signedPreKeys = options.signedPreKeys;
    const onListenerError = (error: unknown): void => {
      this.logger.error({ err: error }, "a session event listener threw");
    };
    this.events = new TypedEmitter(onListenerError);
    this.monitor = new ConnectionMonitor(this.clock.nowMs(), onListenerError);
    let logged: ConnectionStatus | undefined;
    this.monitor.events.on("change", (status) => {
      // Every change of state or pipe is logged with its reason; counts and health alone are not.
      if (logged?.state !== status.state || logged.transport !== status.transport) {
        this.logger.info(
          {
            state: status.state,
            transport: status.transport,
            from: logged === undefined ? undefined : `${logged.state}/${logged.transport ?? "-"}`,
            reason: status.state === "connected" || status.state === "syncing" ? undefined : status.lastFailure?.reason,
            nextRetryAtMs: status.nextRetryAtMs,
          },
          "connection state changed",
        );
        logged = status;
      }
      this.events.emit("connection", status);
    });
    if (isSwitchingTransports(this.transports)) {
      const ladder = this.transports;
      ladder.onHealth = (transports) => {
        this.monitor.dispatch({ type: "health", transports });
      };
      ladder.onSwitch = (to) => {
        this.switchTo(to);
      };
      this.monitor.dispatch({ type: "health", transports: ladder.health });
    }
    this.outbox = new OutboxSender({
      store: this.store,
      send: (entry) => this.sendEntry(entry),
      canSend: () => this.isSendingOutbox && this.live?.isOpen === true,
      onUpdate: (entry) => {
        this.events.emit("outbox", entry);
        this.refreshQueuedCount();
      },
      onError: (error) => {
        this.report("sending the outbox", error);
      },
      clock: this.clock,
      random: this.random,
      logger: this.logger,
    });
  }

  /** The current connection status. */
  get status(): ConnectionStatus {
    return this.monitor.status;
  }

  get userId(): string {
    return this.profile.userId;
  }

  get deviceId(): string {
    return this.profile.deviceId;
  }

  /** Loads what the store knows and starts connecting; resolves once the loop runs. */
  async start(): Promise<void> {
    if (this.loop !== undefined) throw new Error("the session was started already");
    this.inbox = new Inbox(await this.store.highestReceivedSeqs());
    this.codecValue = new E2eCodec({
      userId: this.profile.userId,
      deviceId: this.profile.deviceId,
      identity: this.e2eKeys.identity,
      storageKey: this.e2eKeys.storageKey,
      store: this.store,
      x25519: this.e2eKeys.x25519 ?? (await selectX25519Provider()),
      ed25519: this.e2eKeys.ed25519 ?? (await selectEd25519Provider()),
      clock: this.clock,
      ...(this.e2eKeys.onKeyMade === undefined ? {} : { onKeyMade: this.e2eKeys.onKeyMade }),
      ...(this.e2eKeys.mlKem === undefined ? {} : { mlKem: this.e2eKeys.mlKem }),
      ...(this.signedPreKeys === undefined ? {} : { signedPreKeys: this.signedPreKeys }),
    });
    this.codecValue.setServer(this.e2eServer());
    this.groupsValue = new GroupCodec({
      userId: this.profile.userId,
      deviceId: this.profile.deviceId,
      storageKey: this.e2eKeys.storageKey,
      store: this.store,
      ed25519: this.e2eKeys.ed25519 ?? (await selectEd25519Provider()),
      e2e: this.codecValue,
      clock: this.clock,
      window: this.groupWindow,
    });
    this.groupsValue.setServer(this.groupServer());
    this.refreshQueuedCount();
    const signal = this.lifetime.signal;
    this.loop = this.run(signal).catch((error: unknown) => {
      // run() handles every expected failure itself; this is a bug, shown and stopped.
      this.report("the connection loop", error);
      this.monitor.dispatch({ type: "stopped", atMs: this.clock.nowMs() });
    });
    if (this.timing.outboxPollMs !== undefined && this.isSendingOutbox)
      this.startOutboxPoll(this.timing.outboxPollMs, signal);
  }

  /**
   * Stops: no new messages are taken in, the one being stored finishes and is
   * acked, in-flight sends settle, and the connection closes.
   */
  async stop(): Promise<void> {
    if (this.lifetime.signal.aborted) return;
    this.isReceivingStopped = true;
    this.cancelPoll?.();
    await this.inboundDrain;
    this.flushAcks();
    this.lifetime.abort(new Error("session stopped"));
    if (isSwitchingTransports(this.transports)) this.transports.dispose();
    await this.loop;
    await this.outbox.stop();
    this.monitor.dispatch({ type: "stopped", atMs: this.clock.nowMs() });
  }

  /** Closes the connection to reconnect on `to`, which the transport ladder found better. */
  private switchTo(to: TransportKind): void {
    const connection = this.live;
    if (connection === undefined || this.lifetime.signal.aborted) return;
    this.switchingTo = to;
    this.logger.info({ from: connection.kind, to }, "a better transport works again: switching");
    connection.close(CLOSE_GOING_AWAY, `switching to ${to}`);
  }

  /** Skips the rest of the current backoff wait (the network came back, the user asked). */
  retryNow(): void {
    this.wake?.abort();
  }

  /**
   * Puts a text message in the outbox and starts sending it. Resolves once the
   * message is durable (state "queued"); follow the "outbox" event for its fate.
   * Throws INVALID_ARGUMENT / TOO_LARGE for input the server would refuse anyway.
   */
  async send(chatId: string, text: string): Promise<OutboxEntry> {
    if (!isId("chat", chatId))
      throw new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, `not a chat id: ${chatId}`);
    if (text.length === 0)
      throw new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "a message needs some text");
    const content = textContent(text, this.clock.nowMs());
    const size = Content.encode(content).finish().length;
    if (size > MAX_MESSAGE_BYTES) {
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_TOO_LARGE,
        `message of ${size} bytes exceeds ${MAX_MESSAGE_BYTES}`,
      );
    }
    return this.sendContent(chatId, content);
  }

  /** The end-to-end layer of this session (trust, verification); after start(). */
  get e2e(): E2eCodec {
    if (this.codecValue === undefined) throw new Error("the session is not started");
    return this.codecValue;
  }

  /**
   * Creates a group of this user and `memberUserIds` (this user its admin);
   * resolves with its chat id. Needs a connection within the deadline.
   */
  async createGroup(title: string, memberUserIds: readonly string[], options: WaitOptions): Promise<string> {
    const change = await createGroup(this.groupAdmin(options), title, memberUserIds);
    await this.store.saveChats([{ chatId: change.chatId, kind: "group", title, memberUserIds: change.members }]);
    this.events.emit("group", { kind: "change", change });
    return change.chatId;
  }

  /**
   * An admin's change to a group (add, remove, promote, demote, rename,
   * rotate; any member may leave), signed by this device and applied here
   * once the server took it. Resolves with the change.
   */
  async changeGroup(chatId: string, change: GroupChangeRequest, options: WaitOptions): Promise<GroupChange> {
    const applied = await changeGroup(this.groupAdmin(options), chatId, change);
    // This device's own operations are shown here: the server echoes them to it only now and then.
    this.events.emit("group", { kind: "change", change: applied });
    return applied;
  }

  private groupAdmin(options: WaitOptions): GroupAdminPort {
    return {
      userId: this.profile.userId,
      deviceId: this.profile.deviceId,
      signer: this.signer,
      groups: this.groups,
      createChat: ({ chatId, title, genesis }) =>
        this.request(
          "createChat",
          { kind: ChatKind.CHAT_KIND_GROUP, memberUserIds: [], title, chatId, genesis },
          options,
        ),
      sendMessage: (request) => this.request("sendMessage", request, options),
      exclusive: (work) => this.e2e.exclusive(work),
      writeE2e: (writes) => this.store.writeE2e(writes),
      nowMs: () => this.clock.nowMs(),
    };
  }

  /** The group layer of end-to-end encryption (membership chains, sender keys); after start(). */
  get groups(): GroupCodec {
    if (this.groupsValue === undefined) throw new Error("the session is not started");
    return this.groupsValue;
  }

  /**
   * Seals and stores a message in one step when the sessions it needs are at
   * hand; otherwise stores it unsealed, and the first send seals it.
   */
  private async sendContent(chatId: string, content: Content): Promise<OutboxEntry> {
    const message = { messageId: messageIdToHex(newMessageId()), chatId, content, createdAtMs: this.clock.nowMs() };
    const codec = this.e2e;
    const entry = await codec.exclusive(async () => {
      for (let attempt = 1; ; attempt += 1) {
        let sealed;
        try {
          sealed = await this.sealFor(chatId, message.messageId, content);
        } catch (error) {
          // A changed identity blocks sending: the message is refused, not queued.
          if (error instanceof IdentityChangedError) throw error;
          // Anything else (offline, no bundle yet, an unknown chat) queues it unsealed:
          // the first send seals it, or shows why it cannot be sent.
          if (error instanceof NeedsServerError || error instanceof RemessengerError) {
            return this.store.addToOutbox(message);
          }
          throw error;
        }
        try {
          return await this.store.addToOutbox({ ...message, sealed: sealed.sealed }, sealed.writes);
        } catch (error) {
          if (!(error instanceof StaleE2eStateError) || attempt >= MAX_STALE_RETRIES) throw error;
        }
      }
    });
    this.events.emit("outbox", entry);
    this.refreshQueuedCount();
    this.outbox.kick(chatId);
    return entry;
  }

  /** Sends whatever is queued now (e.g. messages another process added), if connected. */
  async flushOutbox(): Promise<void> {
    await this.outbox.flushAll();
  }

  /**
   * One request to the server, waiting first for a logged-in connection; the
   * deadline covers both. Rejects with the server's RemessengerError, or
   * UNAVAILABLE / DEADLINE_EXCEEDED when no connection came in time.
   */
  request<K extends RequestKind>(kind: K, value: RequestValue<K>, options: WaitOptions): Promise<ResponseValue<K>> {
    const limit = deadline(this.clock, options.timeoutMs, kind, options.signal);
    return this.whenLoggedIn({ timeoutMs: options.timeoutMs, signal: limit.signal })
      .then((connection) => connection.request(kind, value, { timeoutMs: options.timeoutMs, signal: limit.signal }))
      .finally(() => {
        limit.dispose();
      });
  }

  /** Resolves with the connection once logged in; rejects on deadline, abort or refusal. */
  whenLoggedIn(options: WaitOptions): Promise<Connection> {
    const ready = this.readyConnection();
    if (ready !== undefined) return Promise.resolve(ready);
    const { state } = this.monitor.status;
    if (isFinal(state)) return Promise.reject(this.notConnectedError(`the session is ${state}`));
    const limit = deadline(this.clock, options.timeoutMs, "waiting for a connection", options.signal);
    const { promise, resolve, reject } = Promise.withResolvers<Connection>();
    const off = this.monitor.events.on("change", (status) => {
      const connection = this.readyConnection();
      if (connection !== undefined) resolve(connection);
      else if (isFinal(status.state)) reject(this.notConnectedError(`the session is ${status.state}`));
    });
    return raceAbort(promise, limit.signal)
      .catch((error: unknown) => {
        throw isError(error, ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED)
          ? this.notConnectedError(`not connected within ${options.timeoutMs} ms`)
          : error;
      })
      .finally(() => {
        off();
        limit.dispose();
      });
  }

  /**
   * Waits until every received message is stored, then confirms the acks with
   * the server (an ack request with an id, answered once applied). Use before
   * exiting after a fixed number of messages.
   */
  async confirmAcks(options: WaitOptions): Promise<void> {
    await this.inboundDrain;
    const connection = this.readyConnection();
    if (connection === undefined) throw this.notConnectedError("cannot confirm acks");
    this.flushAcks();
    const acks = this.inbox.currentAcks();
    for (let i = 0; i < acks.length; i += MAX_ACKS_PER_REQUEST) {
      await connection.request("ack", { acks: acks.slice(i, i + MAX_ACKS_PER_REQUEST) }, options);
    }
  }

  /**
   * Takes no more messages: later pushes are neither stored nor acked, so the
   * server keeps them for the next session. Call it from a "message" listener
   * to stop after exactly that message.
   */
  stopReceiving(): void {
    this.isReceivingStopped = true;
  }

  // ── connection loop ────────────────────────────────────────────────────

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const outcome = await this.serveOnce(signal);
      if (signal.aborted) return;
      if (outcome.kind === "refused") {
        this.logger.error(
          { deviceId: this.profile.deviceId, reason: outcome.failure.reason },
          "the server refused this device",
        );
        this.monitor.dispatch({ type: "refused", failure: outcome.failure });
        return;
      }
      // A switch the ladder asked for is no failure: reconnect at once, on the better pipe.
      const isSwitch = this.switchingTo !== undefined;
      this.switchingTo = undefined;
      const wasStable = outcome.wasStable || isSwitch;
      const attempt = wasStable ? 1 : this.monitor.status.failedAttempts + 1;
      const delay = isSwitch ? 0 : backoffDelay(attempt, this.random, this.timing.backoff);
      this.logger.info(
        { transport: this.transports.kind, reason: outcome.failure.reason, retryInMs: delay },
        isSwitch ? "switching transport" : "connection lost",
      );
      this.monitor.dispatch({
        type: "lost",
        failure: outcome.failure,
        wasStable,
        nextRetryAtMs: this.clock.nowMs() + delay,
      });
      const wake = new AbortController();
      this.wake = wake;
      await pause(this.clock, delay, AbortSignal.any([signal, wake.signal]));
      this.wake = undefined;
    }
  }

  /** One connection, from opening the pipe until it drops. Never throws. */
  private async serveOnce(signal: AbortSignal): Promise<ServeOutcome> {
    this.monitor.dispatch({ type: "connecting", transport: this.transports.kind, atMs: this.clock.nowMs() });
    const closed = Promise.withResolvers<TransportCloseReason>();
    const holder: { connection?: Connection } = {};
    let opened;
    try {
      opened = await Connection.open(
        {
          transports: this.transports,
          clock: this.clock,
          logger: this.logger,
          onPush: (push) => {
            if (holder.connection !== undefined) this.onPush(holder.connection, push);
          },
          onClose: (reason) => {
            closed.resolve(reason);
          },
        },
        { signal, timeoutMs: this.timing.connectTimeoutMs },
      );
    } catch (error) {
      return { kind: "lost", failure: this.toFailure(error), wasStable: false };
    }
    const { connection, hello } = opened;
    holder.connection = connection;
    const onAbort = (): void => {
      connection.close(CLOSE_NORMAL, "session stopped");
    };
    signal.addEventListener("abort", onAbort, { once: true });
    let loggedInAt: number | undefined;
    let stopPinger: (() => void) | undefined;
    let stopPreKeyUpkeep: (() => void) | undefined;
    const wasStable = (): boolean =>
      loggedInAt !== undefined && this.clock.nowMs() - loggedInAt >= this.timing.stableAfterMs;
    try {
      const requestOptions = { timeoutMs: this.timing.requestTimeoutMs, signal };
      let login;
      try {
        login = await loginDevice(connection, hello, this.signer, this.profile.deviceId, requestOptions);
      } catch (error) {
        if (isError(error, ErrorCode.ERROR_CODE_UNAUTHENTICATED))
          return { kind: "refused", failure: this.toFailure(error) };
        throw error;
      }
      if (login.userId !== this.profile.userId) {
        const reason = `the server says device ${login.deviceId} belongs to ${login.userId}, not ${this.profile.userId}`;
        return { kind: "refused", failure: { reason, code: undefined, atMs: this.clock.nowMs() } };
      }
      loggedInAt = this.clock.nowMs();
      this.live = connection;
      this.inbox.startConnection();
      this.monitor.dispatch({
        type: "loggedIn",
        transport: connection.kind,
        isSubscribing: this.isSubscribing,
        atMs: loggedInAt,
      });
      this.logger.info({ transport: connection.kind, deviceId: this.profile.deviceId }, "logged in");
      // A new connection: each group's chain is compared with the server's again before its next send.
      this.groups.setServer(this.groupServer());
      const stock = login.preKeyStock;
      drop(
        this.e2e.exclusive(() => this.e2e.maintainPreKeys(stock)),
        (error) => {
          this.report("publishing prekeys", error);
        },
      );
      if (this.isSubscribing) await connection.request("subscribe", {}, requestOptions);
      drop(this.outbox.flushAll(), (error) => {
        this.report("sending the outbox", error);
      });
      stopPinger = this.startPinger(connection);
      stopPreKeyUpkeep = this.startPreKeyUpkeep();
      const reason = await closed.promise;
      return { kind: "lost", failure: this.closeFailure(reason), wasStable: wasStable() };
    } catch (error) {
      return { kind: "lost", failure: this.toFailure(error), wasStable: wasStable() };
    } finally {
      stopPinger?.();
      stopPreKeyUpkeep?.();
      signal.removeEventListener("abort", onAbort);
      if (this.live === connection) this.live = undefined;
      connection.close(CLOSE_NORMAL, "connection abandoned");
    }
  }

  private readyConnection(): Connection | undefined {
    const connection = this.live;
    return connection?.isOpen === true && isLoggedIn(this.monitor.status.state) ? connection : undefined;
  }

  /** While logged in, looks at the prekeys now and then: a long-lived session rotates its signed prekey on time. */
  private startPreKeyUpkeep(): () => void {
    let cancel = (): void => undefined;
    const schedule = (): void => {
      cancel = this.clock.setTimer(() => {
        drop(
          this.e2e.exclusive(() => this.e2e.maintainPreKeys(undefined)),
          (error) => {
            this.report("rotating prekeys", error);
          },
        );
        schedule();
      }, PREKEY_UPKEEP_INTERVAL_MS);
    };
    schedule();
    return () => {
      cancel();
    };
  }

  private startPinger(connection: Connection): () => void {
    let isStopped = false;
    let pinging: Promise<void> | undefined;
    const ping = (timeoutMs: number): Promise<void> =>
      (pinging ??= this.pingOnce(connection, timeoutMs).finally(() => {
        pinging = undefined;
      }));
    let cancelKeepAlive = (): void => undefined;
    const scheduleKeepAlive = (): void => {
      cancelKeepAlive = this.clock.setTimer(() => {
        drop(
          ping(this.timing.pingTimeoutMs).then(() => {
            if (!isStopped && connection.isOpen) scheduleKeepAlive();
          }),
          (error) => {
            this.report("pinging", error);
          },
        );
      }, this.timing.pingIntervalMs);
    };
    // The stall watch looks twice per `stallAfterMs`: a request waiting on a silent server gets a quick ping.
    let cancelStallWatch = (): void => undefined;
    const watchStalls = (): void => {
      cancelStallWatch = this.clock.setTimer(
        () => {
          if (isStopped || !connection.isOpen) return;
          if (pinging === undefined && connection.quietWhileWaitingMs(this.clock.nowMs()) >= this.timing.stallAfterMs) {
            drop(ping(this.timing.stallPingTimeoutMs), (error) => {
              this.report("pinging", error);
            });
          }
          watchStalls();
        },
        Math.max(100, this.timing.stallAfterMs / 2),
      );
    };
    scheduleKeepAlive();
    watchStalls();
    return () => {
      isStopped = true;
      cancelKeepAlive();
      cancelStallWatch();
    };
  }

  private async pingOnce(connection: Connection, timeoutMs: number): Promise<void> {
    const cancelDegrade = this.clock.setTimer(() => {
      this.monitor.dispatch({ type: "stalled", atMs: this.clock.nowMs() });
    }, this.timing.degradedAfterMs);
    try {
      await connection.request("ping", { clientTimeMs: this.clock.nowMs() }, { timeoutMs });
      this.monitor.dispatch({ type: "recovered", atMs: this.clock.nowMs() });
    } catch (error) {
      if (connection.isOpen) {
        // No answer in time on an open pipe: a silent stall. Drop it and reconnect.
        const reason = isError(error, ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED)
          ? `no answer to a ping within ${timeoutMs} ms`
          : `ping failed: ${error instanceof Error ? error.message : String(error)}`;
        connection.close(CLOSE_GOING_AWAY, reason);
      }
    } finally {
      cancelDegrade();
    }
  }

  // ── receiving ──────────────────────────────────────────────────────────

  private onPush(connection: Connection, push: ServerPush): void {
    if (this.inbound.length >= MAX_INBOUND_QUEUE) {
      connection.close(CLOSE_GOING_AWAY, `more than ${MAX_INBOUND_QUEUE} pushes waiting to be stored`);
      return;
    }
    this.inbound.push({ connection, push });
    if (this.inboundDrain === undefined) {
      this.inboundDrain = this.drainInbound().finally(() => {
        this.inboundDrain = undefined;
      });
    }
  }

  /** Processes pushes one at a time, in arrival order; acks when idle or every `ackBatchMax`. */
  private async drainInbound(): Promise<void> {
    for (let item = this.inbound.shift(); item !== undefined; item = this.inbound.shift()) {
      const { connection, push } = item;
      // Pushes of a dropped connection were not acked; the server sends them again.
      if (connection !== this.live || !connection.isOpen) continue;
      try {
        await this.handlePush(push);
      } catch (error) {
        this.report("storing a received message", error);
        // Nothing after this message may be acked before it is stored: start over.
        connection.close(CLOSE_GOING_AWAY, "could not store a received message");
        continue;
      }
      if (this.inbox.unacked >= this.timing.ackBatchMax) this.flushAcks();
    }
    this.flushAcks();
  }

  private async handlePush(push: ServerPush): Promise<void> {
    const body = push.push;
    switch (body?.$case) {
      case "message":
        await this.receiveMessage(body.value);
        return;
      case "receipt":
        await this.receiveReceipt(body.value);
        return;
      case "syncComplete":
        this.monitor.dispatch({ type: "synced", atMs: this.clock.nowMs() });
        this.events.emit("synced", { pushed: body.value.pushed });
        return;
      case undefined:
        this.logger.warn({}, "empty push ignored");
        return;
      default:
        assertNever(body);
    }
  }

  private async receiveMessage(message: Message): Promise<void> {
    if (this.isReceivingStopped) return;
    const { chatId, seq } = message;
    if (this.inbox.classify(chatId, seq) === "duplicate") {
      this.inbox.skipped(chatId, seq);
      return;
    }
    const base: ReceivedMessage = {
      chatId,
      seq,
      messageId: messageIdToHex(message.messageId),
      senderUserId: message.senderUserId,
      senderDeviceId: message.senderDeviceId,
      serverTimeMs: message.serverTimeMs,
      content: undefined,
    };
    const isOwnDevice = message.senderDeviceId === this.profile.deviceId;
    if (message.groupOperation !== undefined) {
      await this.receiveOperation(message, base, isOwnDevice);
      return;
    }
    const { record, isNew, heal, isControl, missingKeyEpoch } = isOwnDevice
      ? await this.receiveOwn(message, base)
      : await this.receiveSealed(message, base);
    this.inbox.stored(chatId, seq);
    // Not new: another process on this profile stored (and showed) it first.
    if (!isNew) return;
    const body = record.content?.body;
    if (body?.$case === "sessionReset") {
      if (body.value.targetDeviceId === this.profile.deviceId) {
        this.events.emit("sessionReset", {
          chatId,
          fromUserId: record.senderUserId,
          fromDeviceId: record.senderDeviceId,
          reason: body.value.reason,
        });
        // In a group, that device lost our sender key with the session: it gets it again before our next message.
        if (await this.groups.isKnownGroup(chatId)) {
          await this.e2e.exclusive(() => this.groups.forgetDistribution(chatId, record.senderDeviceId));
        }
      }
      return;
    }
    if (body?.$case === "senderKeyRequest") {
      if (!isOwnDevice) this.answerKeyRequest(record, body.value);
      return;
    }
    // Key distributions (ours echoed back, or addressed to other devices) are never shown.
    if (isControl || body?.$case === "senderKey") return;
    this.events.emit("message", { message: record, isOwnDevice });
    if (heal !== undefined) this.heal(chatId, record.senderUserId, record.senderDeviceId, heal);
    if (missingKeyEpoch !== undefined) {
      this.askForSenderKey(chatId, record.senderUserId, record.senderDeviceId, missingKeyEpoch, record.problem ?? "");
    }
  }

  /** Our own message, pushed back: its content is in our outbox (a group key distribution never was). */
  private async receiveOwn(message: Message, base: ReceivedMessage): Promise<Received> {
    const entry = await this.store.getOutboxEntry(base.messageId);
    if (entry === undefined && message.payload.length === 0 && (await this.groups.isKnownGroup(base.chatId))) {
      return { record: base, isNew: await this.store.saveReceived(base), heal: undefined, isControl: true };
    }
    const record: ReceivedMessage =
      entry === undefined
        ? { ...base, problem: "sent by this device, but not in its outbox" }
        : { ...base, content: entry.content };
    return { record, isNew: await this.store.saveReceived(record), heal: undefined, isControl: false };
  }

  /**
   * A group's membership operation: verified and applied (catching up on
   * earlier ones first), stored with its place in the sequence, and shown as
   * a `group` event (this device's own ones were shown when it made them);
   * a refused one is stored with its reason and changes nothing.
   */
  private async receiveOperation(message: Message, base: ReceivedMessage, isOwnDevice: boolean): Promise<void> {
    const codec = this.e2e;
    const outcome = await codec.exclusive(async () => {
      for (let attempt = 1; ; attempt += 1) {
        const result = await retryStale(() => this.groups.receiveOperation(message));
        const record =
          result.kind === "applied"
            ? base
            : { ...base, problem: `group operation refused: ${result.reason} (${result.detail})` };
        try {
          const isNew = await this.store.saveReceived(record, result.kind === "applied" ? result.writes : []);
          return { result, isNew };
        } catch (error) {
          if (!(error instanceof StaleE2eStateError) || attempt >= MAX_STALE_RETRIES) throw error;
          if (await this.store.hasReceived(base.chatId, base.seq)) return { result, isNew: false };
        }
      }
    });
    this.inbox.stored(base.chatId, base.seq);
    if (!outcome.isNew) return;
    const { result } = outcome;
    if (result.kind === "applied") {
      await this.store.saveChats([
        {
          chatId: base.chatId,
          kind: "group",
          title: result.change.title,
          memberUserIds: result.change.members,
        },
      ]);
      // This device's own operations were shown when it made them (createGroup, changeGroup).
      if (!isOwnDevice) this.events.emit("group", { kind: "change", change: result.change });
      drop(
        codec.exclusive(() => this.groups.pruneExpired(base.chatId, base.seq, base.serverTimeMs)),
        (error) => {
          this.report("deleting the sender keys of ended epochs", error);
        },
      );
    } else {
      this.logger.warn({ chatId: base.chatId, seq: base.seq, reason: result.reason }, "group operation refused");
      this.events.emit("group", {
        kind: "rejected",
        chatId: base.chatId,
        seq: base.seq,
        actorUserId: base.senderUserId,
        reason: result.reason,
        detail: result.detail,
      });
    }
  }

  /** Opens and stores a message with its ratchet step in one transaction, retrying when another process moved the state. */
  private receiveSealed(message: Message, base: ReceivedMessage): Promise<Received> {
    const codec = this.e2e;
    return codec.exclusive(async () => {
      for (let attempt = 1; ; attempt += 1) {
        const opened = await retryStale(() => this.openFor(message));
        if (opened.kind === "control") {
          return { record: base, isNew: await this.store.saveReceived(base), heal: undefined, isControl: true };
        }
        if (opened.kind === "undecryptable") {
          if (await this.store.hasReceived(base.chatId, base.seq))
            return { record: base, isNew: false, heal: undefined, isControl: false };
          const problem = `undecryptable: ${opened.reason} (${opened.detail})`;
          this.logger.warn({ chatId: base.chatId, seq: base.seq, reason: opened.reason }, "message not decryptable");
          const record = { ...base, problem };
          return {
            record,
            isNew: await this.store.saveReceived(record),
            heal: opened.canHeal ? opened.reason : undefined,
            isControl: false,
            ...(opened.missingKeyEpoch === undefined ? {} : { missingKeyEpoch: opened.missingKeyEpoch }),
          };
        }
        const record = { ...base, content: opened.content };
        try {
          const isNew = await this.store.saveReceived(record, opened.writes);
          return { record, isNew, heal: undefined, isControl: false };
        } catch (error) {
          if (!(error instanceof StaleE2eStateError) || attempt >= MAX_STALE_RETRIES) throw error;
          if (await this.store.hasReceived(base.chatId, base.seq))
            return { record, isNew: false, heal: undefined, isControl: false };
        }
      }
    });
  }

  /**
   * Opens a message from another device: a group envelope with the sender's
   * key, anything else pairwise. A sender key that arrives pairwise is kept
   * (its write goes with the message) and the stored content carries no
   * chain key; a group's pairwise message for other devices is a control
   * message for them.
   */
  private async openFor(message: Message): Promise<OpenedFor> {
    if (message.payload.length > 0) {
      const opened = await this.groups.open(message);
      if (opened.kind === "content") return { kind: "content", content: opened.content, writes: opened.writes };
      const { reason, detail, missingEpoch } = opened;
      return {
        kind: "undecryptable",
        reason,
        detail,
        canHeal: false,
        ...(missingEpoch === undefined ? {} : { missingKeyEpoch: missingEpoch }),
      };
    }
    const opened = await this.e2e.open(message);
    if (opened.kind === "undecryptable") {
      if (opened.reason === "not-for-this-device" && (await this.groups.isKnownGroup(message.chatId))) {
        return { kind: "control" };
      }
      return opened;
    }
    const body = opened.content.body;
    if (body?.$case !== "senderKey") return opened;
    const accepted = await this.groups.acceptDistribution(message, body.value);
    if (accepted.kind === "rejected") {
      return { kind: "undecryptable", reason: accepted.reason, detail: accepted.detail, canHeal: false };
    }
    const stripped: Content = {
      ...opened.content,
      body: { $case: "senderKey", value: { ...body.value, chainKey: new Uint8Array(0) } },
    };
    return { kind: "content", content: stripped, writes: [...opened.writes, ...accepted.writes] };
  }

  /**
   * The session with a device failed: forget it, and tell the device through
   * a new session (from a fresh prekey of it), so its next message gets through.
   */
  private heal(chatId: string, userId: string, deviceId: string, reason: string): void {
    const now = this.clock.nowMs();
    if (!this.heals.shouldAsk(ANY_CHAT, deviceId, now)) return;
    this.events.emit("healing", { chatId, userId, deviceId, reason });
    drop(
      this.e2e.resetSession(deviceId).then(() =>
        this.sendContent(chatId, {
          body: { $case: "sessionReset", value: { targetDeviceId: deviceId, reason } },
          composedAtMs: now,
        }),
      ),
      (error) => {
        this.report(`resetting the session with ${deviceId}`, error);
      },
    );
  }

  /**
   * A group message did not open for lack of its sender's key of `epoch`:
   * ask the sending device for it, pairwise (at most once per sender device
   * and group per HEAL_INTERVAL_MS), so its next messages open here. The
   * request goes through the outbox like any message (retried until the
   * server has it).
   */
  private askForSenderKey(chatId: string, userId: string, deviceId: string, epoch: number, reason: string): void {
    if (!this.keyRequests.shouldAsk(chatId, deviceId, this.clock.nowMs())) return;
    drop(this.requestSenderKeyOnce(chatId, userId, deviceId, epoch, reason), (error) => {
      this.report(`asking ${deviceId} for its sender key`, error);
    });
  }

  private async requestSenderKeyOnce(
    chatId: string,
    userId: string,
    deviceId: string,
    epoch: number,
    reason: string,
  ): Promise<void> {
    // A sender that has left the group cannot be reached in it (and sends nothing more there).
    const state = await this.groups.groupState(chatId);
    if (state?.members.includes(userId) !== true) return;
    this.events.emit("senderKeyRequested", { chatId, userId, deviceId, epoch, reason });
    await this.requestSenderKey(chatId, deviceId, epoch);
  }

  /**
   * Asks member device `deviceId` of group `chatId` for its sender key of
   * `epoch`, pairwise; resolves once the request is in the outbox (follow the
   * "outbox" event for its fate: the server refuses it from a non-member).
   * The session asks by itself when a message does not open for lack of the
   * key; this is for a user's "ask again".
   */
  async requestSenderKey(chatId: string, deviceId: string, epoch: number): Promise<OutboxEntry> {
    return this.sendContent(chatId, {
      body: { $case: "senderKeyRequest", value: { chatId, epoch, targetDeviceId: deviceId } },
      composedAtMs: this.clock.nowMs(),
    });
  }

  /**
   * Another member device asked for this device's sender key (pairwise, so
   * its sender is authenticated): GroupCodec.answerKeyRequest hands it over
   * when that user is entitled to the epoch, and the outcome is shown.
   */
  private answerKeyRequest(record: ReceivedMessage, request: SenderKeyRequest): void {
    const { chatId, senderUserId: fromUserId, senderDeviceId: fromDeviceId } = record;
    if (request.targetDeviceId !== this.profile.deviceId) return;
    // Each answer costs a pairwise encryption: a device asking more often than the rule allows is ignored.
    if (!this.keyAnswers.shouldAsk(chatId, fromDeviceId, this.clock.nowMs())) {
      this.logger.warn({ chatId, deviceId: fromDeviceId }, "sender key request ignored: asked again too soon");
      return;
    }
    const codec = this.e2e;
    drop(
      codec
        .exclusive(() => retryStale(() => this.groups.answerKeyRequest(chatId, fromUserId, fromDeviceId, request)))
        .then((outcome) => {
          const who = { chatId, fromUserId, fromDeviceId, epoch: request.epoch };
          if (outcome.kind === "answered") {
            this.logger.info(
              { chatId, deviceId: fromDeviceId, epoch: request.epoch },
              "sender key handed out on request",
            );
            this.events.emit("senderKeyRequest", { kind: "answered", ...who, iteration: outcome.iteration });
          } else {
            this.logger.warn(
              { chatId, deviceId: fromDeviceId, epoch: request.epoch, reason: outcome.reason },
              "sender key request refused",
            );
            this.events.emit("senderKeyRequest", {
              kind: "refused",
              ...who,
              reason: outcome.reason,
              detail: outcome.detail,
            });
          }
        }),
      (error) => {
        this.report(`answering ${fromDeviceId}'s sender key request`, error);
      },
    );
  }

  private async receiveReceipt(receipt: Receipt): Promise<void> {
    // Our own other devices' cursors say nothing about delivery to the other side.
    if (receipt.userId === this.profile.userId) return;
    for (const entry of await this.store.applyReceipt(receipt.chatId, receipt.throughSeq))
      this.events.emit("outbox", entry);
  }

  private flushAcks(): void {
    const connection = this.live;
    if (connection?.isOpen !== true) return;
    for (
      let acks = this.inbox.takeAcks(MAX_ACKS_PER_REQUEST);
      acks.length > 0;
      acks = this.inbox.takeAcks(MAX_ACKS_PER_REQUEST)
    ) {
      try {
        connection.notify("ack", { acks });
      } catch (error) {
        // The pipe just closed: the next connection acks again what the server resends.
        this.logger.debug({ reason: error instanceof Error ? error.message : String(error) }, "ack not sent");
        return;
      }
      this.events.emit("acked", acks);
    }
  }

  // ── sending ────────────────────────────────────────────────────────────

  private async sendEntry(entry: OutboxEntry): Promise<{ seq: number; duplicate: boolean; serverTimeMs: number }> {
    const connection = this.live;
    if (connection?.isOpen !== true) throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "not connected");
    const refusal = textOnlyRefusal(this.transports.kind, entry.content);
    if (refusal !== undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, refusal);
    let sealed = entry.sealed ?? (await this.sealQueued(entry));
    sealed = await this.prepareGroupSend(entry, sealed);
    for (let round = 0; ; round += 1) {
      const request = SendMessageRequest.decode(sealed);
      if (request.chatId !== entry.chatId || messageIdToHex(request.messageId) !== entry.messageId) {
        throw new RemessengerError(
          ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
          `sealed payload of ${entry.messageId} is not its own`,
        );
      }
      try {
        return await connection.request("sendMessage", request, {
          timeoutMs: this.timing.requestTimeoutMs,
          signal: this.lifetime.signal,
        });
      } catch (error) {
        if (!(error instanceof DevicesChangedError)) throw error;
        if (round >= MAX_RESEAL_ROUNDS) {
          // The devices keep changing under us: keep the message queued and try again later.
          throw new RemessengerError(
            ErrorCode.ERROR_CODE_UNAVAILABLE,
            `the recipients' devices changed ${round + 1} times while sending; will retry`,
            { cause: error, retryAfterMs: 2_000 },
          );
        }
        this.logger.info(
          {
            chatId: entry.chatId,
            messageId: entry.messageId,
            missing: error.missingDeviceIds.length,
            stale: error.staleDeviceIds.length,
          },
          "the chat's devices changed: sealing for the new ones and sending again",
        );
        sealed = await this.resealQueued(entry, sealed, error);
      }
    }
  }

  /**
   * Seals a queued message again after DEVICES_CHANGED (only for the devices
   * that changed; see E2eCodec.reseal) and stores the new bytes with their
   * ratchet steps, in place of exactly the bytes that were refused.
   */
  private resealQueued(entry: OutboxEntry, previous: Uint8Array, change: DevicesChangedError): Promise<Uint8Array> {
    return this.replaceSealed(entry, previous, () => this.e2e.reseal(previous, entry.content, change));
  }

  /**
   * Stores what `seal` makes in place of a queued message's sealed bytes,
   * only while they are still exactly `previous` (optimistic: another process
   * on this profile may have replaced them first; then its bytes are sent).
   */
  private replaceSealed(
    entry: OutboxEntry,
    previous: Uint8Array,
    seal: () => Promise<{ sealed: Uint8Array; writes: readonly E2eWrite[] }>,
  ): Promise<Uint8Array> {
    return this.e2e.exclusive(async () => {
      for (let attempt = 1; attempt <= MAX_STALE_RETRIES; attempt += 1) {
        const current = await this.store.getOutboxEntry(entry.messageId);
        if (current?.state !== "queued" || current.sealed === undefined) {
          throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, `message ${entry.messageId} left the queue`);
        }
        if (!equalBytes(current.sealed, previous)) return current.sealed;
        const resealed = await seal();
        try {
          const stored = await this.store.resealOutboxEntry(
            entry.messageId,
            previous,
            resealed.sealed,
            resealed.writes,
          );
          if (stored?.sealed !== undefined) return stored.sealed;
        } catch (error) {
          if (!(error instanceof StaleE2eStateError)) throw error;
        }
      }
      throw new Error(`message ${entry.messageId} could not be sealed again`);
    });
  }

  /**
   * Seals a message for its chat: in a group once for every member with this
   * device's sender key (a session reset goes pairwise to its one device); in
   * a direct chat pairwise per device.
   */
  private async sealFor(chatId: string, messageIdHex: string, content: Content): Promise<Sealed> {
    if (!(await this.isGroupChat(chatId))) return this.e2e.seal(chatId, messageIdHex, content);
    // Online, the chain is compared with the server's first (once per connection): a one-shot sender
    // that heard no pushes, or a device just added, seals in the group's current epoch.
    if (this.readyConnection() !== undefined) {
      try {
        await this.groups.refresh(chatId);
      } catch (error) {
        if (!(error instanceof RemessengerError || error instanceof NeedsServerError)) throw error;
        // Sealed with what this device knows; the chain is compared again before the message leaves.
        this.logger.debug({ chatId, reason: error.message }, "group chain not checked before sealing");
      }
    }
    const body = content.body;
    if (body?.$case !== "sessionReset" && body?.$case !== "senderKeyRequest") {
      return this.groups.seal(chatId, messageIdHex, content);
    }
    const members = (await this.groups.groupState(chatId))?.members ?? [];
    const target = body.value.targetDeviceId;
    return this.e2e.sealForMembers(chatId, messageIdHex, content, members, (id) => id === target);
  }

  /** Whether `chatId` is a group (asks the server about a chat this device has not seen yet). */
  private async isGroupChat(chatId: string): Promise<boolean> {
    if (await this.groups.isKnownGroup(chatId)) return true;
    const summary = await this.store.getChat(chatId);
    if (summary !== undefined) return summary.kind === "group";
    const connection = this.readyConnection();
    if (connection === undefined) throw new NeedsServerError(`chat ${chatId} is not known here yet`);
    const { chat } = await connection.request(
      "getChat",
      { chatId },
      { timeoutMs: this.timing.requestTimeoutMs, signal: this.lifetime.signal },
    );
    if (chat === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `chat ${chatId} not found`);
    await this.store.saveChats([toChatSummary(chat)]);
    return chat.kind === ChatKind.CHAT_KIND_GROUP;
  }

  /**
   * A group message about to leave: this device's sender key of its epoch
   * reaches every member device first, and a message of an epoch this device
   * knows has ended is sealed again in the current one. Direct chats pass
   * through.
   */
  private async prepareGroupSend(entry: OutboxEntry, sealed: Uint8Array): Promise<Uint8Array> {
    if (!(await this.isGroupChat(entry.chatId))) return sealed;
    const codec = this.e2e;
    let current = sealed;
    for (let round = 0; round < MAX_RESEAL_ROUNDS; round += 1) {
      const verdict = await codec.exclusive(() => this.groups.prepareSend(entry.chatId, current));
      if (verdict === "send") return current;
      this.logger.info(
        { chatId: entry.chatId, messageId: entry.messageId },
        "sealed in a group epoch that ended: sealing it again in the current one",
      );
      current = await this.resealGroupQueued(entry, current);
    }
    throw new RemessengerError(
      ErrorCode.ERROR_CODE_UNAVAILABLE,
      `the group's epoch changed ${MAX_RESEAL_ROUNDS} times while sending; will retry`,
      { retryAfterMs: 2_000 },
    );
  }

  /** Seals a queued group message again in the current epoch, in place of exactly `previous`. */
  private resealGroupQueued(entry: OutboxEntry, previous: Uint8Array): Promise<Uint8Array> {
    return this.replaceSealed(entry, previous, () => this.groups.seal(entry.chatId, entry.messageId, entry.content));
  }

  /** Seals a message that entered the outbox unsealed (offline, no session yet); once, with its ratchet step. */
  private sealQueued(entry: OutboxEntry): Promise<Uint8Array> {
    const codec = this.e2e;
    return codec.exclusive(async () => {
      for (let attempt = 1; ; attempt += 1) {
        const current = await this.store.getOutboxEntry(entry.messageId);
        if (current?.sealed !== undefined) return current.sealed;
        const sealed = await this.sealFor(entry.chatId, entry.messageId, entry.content);
        try {
          const stored = await this.store.sealOutboxEntry(entry.messageId, sealed.sealed, sealed.writes);
          if (stored?.sealed !== undefined) return stored.sealed;
        } catch (error) {
          if (!(error instanceof StaleE2eStateError) || attempt >= MAX_STALE_RETRIES) throw error;
        }
        if (attempt >= MAX_STALE_RETRIES) throw new Error(`message ${entry.messageId} could not be sealed`);
      }
    });
  }

  /** The server requests the E2E layer makes: only on a live connection (sealing never waits for one). */
  private e2eServer(): E2eServer {
    const live = <K extends RequestKind>(kind: K, value: RequestValue<K>): Promise<ResponseValue<K>> => {
      const connection = this.readyConnection();
      if (connection === undefined) return Promise.reject(new NeedsServerError(`not connected (${kind})`));
      return connection.request(kind, value, { timeoutMs: this.timing.requestTimeoutMs, signal: this.lifetime.signal });
    };
    const required = <T>(value: T | undefined, what: string): T => {
      if (value === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `the server sent no ${what}`);
      return value;
    };
    return {
      getUser: async (userId) => required((await live("getUser", { userId })).user, "user"),
      getChat: async (chatId) => required((await live("getChat", { chatId })).chat, "chat"),
      getPreKeyBundles: async (userId, deviceIds) =>
        (await live("getPreKeyBundles", { userId, deviceIds: [...deviceIds] })).bundles,
      publishPreKeys: async (request) => required((await live("publishPreKeys", request)).stock, "stock"),
    };
  }

  /** The server requests the group layer makes (operations, chat heads, key distributions): live connection only. */
  private groupServer(): GroupServer {
    const live = <K extends RequestKind>(kind: K, value: RequestValue<K>): Promise<ResponseValue<K>> => {
      const connection = this.readyConnection();
      if (connection === undefined) return Promise.reject(new NeedsServerError(`not connected (${kind})`));
      return connection.request(kind, value, { timeoutMs: this.timing.requestTimeoutMs, signal: this.lifetime.signal });
    };
    return {
      getChat: async (chatId) => {
        const { chat } = await live("getChat", { chatId });
        if (chat === undefined) throw new RemessengerError(ErrorCode.ERROR_CODE_NOT_FOUND, `the server sent no chat`);
        return chat;
      },
      getGroupOperations: async (chatId, afterSeq, limit) =>
        (await live("getGroupOperations", { chatId, afterSeq, limit })).operations,
      sendMessage: (request) => live("sendMessage", request),
    };
  }

  private startOutboxPoll(intervalMs: number, signal: AbortSignal): void {
    const tick = (): void => {
      drop(
        this.outbox.flushAll().finally(() => {
          this.refreshQueuedCount();
          if (!signal.aborted) this.cancelPoll = this.clock.setTimer(tick, intervalMs);
        }),
        (error) => {
          this.report("polling the outbox", error);
        },
      );
    };
    this.cancelPoll = this.clock.setTimer(tick, intervalMs);
  }

  /** Updates the queued count in the status; only the latest of overlapping reads counts. */
  private refreshQueuedCount(): void {
    const request = ++this.queuedCountRequest;
    drop(
      this.store.countOutbox("queued").then((count) => {
        if (request === this.queuedCountRequest) this.monitor.dispatch({ type: "queued", count });
      }),
      (error) => {
        this.report("counting the outbox", error);
      },
    );
  }

  // ── failures ───────────────────────────────────────────────────────────

  private report(context: string, error: unknown): void {
    this.logger.error({ err: error, context }, `failed while ${context}`);
    this.events.emit("problem", { context, error });
  }

  private toFailure(error: unknown): ConnectionFailure {
    const atMs = this.clock.nowMs();
    if (error instanceof RemessengerError) return { reason: error.message, code: errorCodeName(error.code), atMs };
    return { reason: error instanceof Error ? error.message : String(error), code: undefined, atMs };
  }

  private closeFailure(reason: TransportCloseReason): ConnectionFailure {
    const who = reason.isLocal ? "closed here" : "closed by the server";
    return { reason: `${who}: ${reason.reason} (${reason.code})`, code: undefined, atMs: this.clock.nowMs() };
  }

  private notConnectedError(prefix: string): RemessengerError {
    const failure = this.monitor.status.lastFailure;
    return new RemessengerError(
      ErrorCode.ERROR_CODE_UNAVAILABLE,
      failure === undefined ? prefix : `${prefix}: ${failure.reason}`,
    );
  }
}

/**
 * Runs `work` again when another process on this profile moved an
 * end-to-end record it wrote along the way (a device list refreshed by a
 * concurrent `send`), at most MAX_STALE_RETRIES times.
 */
async function retryStale<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await work();
    } catch (error) {
      if (!(error instanceof StaleE2eStateError) || attempt >= MAX_STALE_RETRIES) throw error;
    }
  }
}
