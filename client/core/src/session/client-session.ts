/**
 * The client session: the facade an app holds for one device. It builds the
 * session's units and wires them, each with one job and none calling back up:
 *
 *   ConnectionKeeper  connect, log in, subscribe, ping, prekey upkeep, reconnect
 *   Receiver          pushes in order: open and store (MessageOpener), ack in batches
 *   Sealer            seal, reseal (DEVICES_CHANGED, ended epoch), send: the OutboxSender's sender
 *   Repair            healing, asking for sender keys, answering such requests
 *   ServerApi         the one typed adapter over the logged-in connection
 *
 * Invariants:
 * - A message the user writes is in the store before anything is sent
 *   (`send` resolves only then), and is retried on every connection until
 *   the server answers with its seq.
 * - Every message is end-to-end encrypted (PairwiseSessions, GroupSessions); the E2E
 *   lock is theirs, taken inside their methods, never here nor by a caller.
 * - Every failure shows in `status` (ConnectionStatus) with its reason, and
 *   every handled error as a "problem" event.
 * - `stop()` takes nothing more in, lets the message being stored finish and
 *   be acked, settles in-flight sends and closes; `start()` after it starts a
 *   fresh connection loop on the same store (an app suspended and resumed).
 */
import {
  ChatKind,
  Content,
  ErrorCode,
  type GroupState,
  MAX_ACKS_PER_REQUEST,
  MAX_MESSAGE_BYTES,
  type Message,
  RemessengerError,
  isError,
  isId,
} from "@remessenger/protocol";
import { ConnectionMonitor, type ConnectionStatus, isFinal } from "../connection/connection-state.ts";
import { isSwitchingTransports } from "../connection/ladder-transports.ts";
import type { TransportFactory } from "../connection/transport.ts";
import { webSocketTransportFactory } from "../connection/websocket-transport.ts";
import type { KnownUser } from "../e2e/device-directory.ts";
import { type GroupAdminPort, type GroupChangeRequest, changeGroup, createGroup } from "../group/group-admin.ts";
import type { GroupChange, OperationOutcome } from "../group/group-chain.ts";
import { type Clock, deadline, raceAbort, systemClock } from "../runtime/clock.ts";
import { drop } from "../runtime/drop.ts";
import { type Logger, silentLogger } from "../runtime/logger.ts";
import { TypedEmitter } from "../runtime/typed-emitter.ts";
import type { OutboxEntry } from "../store/client-store.ts";
import type { Connection, RequestKind, RequestValue, ResponseValue } from "./connection.ts";
import { textContent } from "./payload-codec.ts";
import { type SessionEvents, reportProblem } from "./session-events.ts";
import type { ClientSessionOptions } from "./session-options.ts";
import { DEFAULT_TIMING, type SessionTiming, type WaitOptions } from "./session-timing.ts";
import { QueuedCount, type SessionShell, type SessionUnits, buildSessionUnits } from "./session-units.ts";

export type { GroupEvent, ReceivedMessageEvent, SenderKeyRequestEvent, SessionEvents } from "./session-events.ts";
export type { ClientSessionOptions, E2eKeyMaterial } from "./session-options.ts";
export { DEFAULT_TIMING, type SessionTiming, type WaitOptions } from "./session-timing.ts";

export class ClientSession {
  readonly events: TypedEmitter<SessionEvents>;
  private readonly options: ClientSessionOptions;
  private readonly transports: TransportFactory;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly timing: SessionTiming;
  private readonly monitor: ConnectionMonitor;
  private readonly shell: SessionShell;
  private current: SessionUnits | undefined;

  constructor(options: ClientSessionOptions) {
    this.options = options;
    this.transports = options.transports ?? webSocketTransportFactory({ serverUrl: options.profile.serverUrl });
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.timing = { ...DEFAULT_TIMING, ...options.timing };
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
      ladder.events.on("health", (transports) => {
        this.monitor.dispatch({ type: "health", transports });
      });
      ladder.events.on("switch", (to) => {
        this.current?.keeper.switchTo(to);
      });
      this.monitor.dispatch({ type: "health", transports: ladder.health });
    }
    const { clock, logger, timing, monitor, events } = this;
    const queuedCount = new QueuedCount(options.store, monitor, events, logger);
    this.shell = { options, transports: this.transports, clock, logger, timing, monitor, events, queuedCount };
  }

  /** The current connection status. */
  get status(): ConnectionStatus {
    return this.monitor.status;
  }

  get userId(): string {
    return this.options.profile.userId;
  }

  get deviceId(): string {
    return this.options.profile.deviceId;
  }

  /** Loads what the store knows and starts connecting; resolves once the loop runs. Again after stop(). */
  async start(): Promise<void> {
    if (this.current !== undefined) throw new Error("the session was started already");
    const run = await buildSessionUnits(this.shell);
    if (this.current !== undefined) throw new Error("the session was started already");
    this.current = run;
    this.monitor.dispatch({ type: "restarted", atMs: this.clock.nowMs() });
    this.shell.queuedCount.refresh();
    const signal = run.lifetime.signal;
    run.loop = run.keeper.run(signal).catch((error: unknown) => {
      // The keeper handles every expected failure itself; this is a bug, shown and stopped.
      this.report("the connection loop", error);
      this.monitor.dispatch({ type: "stopped", atMs: this.clock.nowMs() });
    });
    const pollMs = this.timing.outboxPollMs;
    if (pollMs !== undefined && this.options.sendOutbox !== false) this.startOutboxPoll(run, pollMs);
  }

  /**
   * Stops: no new messages are taken in, the one being stored finishes and is
   * acked, in-flight sends settle, and the connection closes.
   */
  stop(): Promise<void> {
    const run = this.current;
    if (run === undefined) return Promise.resolve();
    run.stopped ??= this.stopRun(run);
    return run.stopped;
  }

  /** Skips the rest of the current backoff wait (the network came back, the user asked). */
  retryNow(): void {
    this.current?.keeper.retryNow();
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
    const { sealer, outbox } = this.run();
    return outbox.queued(await sealer.sealNew(chatId, content));
  }

  /**
   * Asks member device `deviceId` of group `chatId` for its sender key of
   * `epoch`, pairwise; resolves once the request is in the outbox (follow the
   * "outbox" event for its fate: the server refuses it from a non-member).
   * The session asks by itself when a message does not open for lack of the
   * key; this is for a user's "ask again".
   */
  requestSenderKey(chatId: string, deviceId: string, epoch: number): Promise<OutboxEntry> {
    return this.run().repair.requestSenderKey(chatId, deviceId, epoch);
  }

  /**
   * Creates a group of this user and `memberUserIds` (this user its admin);
   * resolves with its chat id. Needs a connection within the deadline.
   */
  async createGroup(title: string, memberUserIds: readonly string[], options: WaitOptions): Promise<string> {
    const change = await createGroup(this.groupAdmin(options), title, memberUserIds);
    const chat = { chatId: change.chatId, kind: "group" as const, title, memberUserIds: change.members };
    await this.options.store.saveChats([chat]);
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

  /** What this device knows of `userId`'s devices and identity; `isRefresh` asks the server first. */
  knownUser(userId: string, isRefresh = false): Promise<KnownUser | undefined> {
    return this.run().e2e.knownUser(userId, isRefresh);
  }

  /** Accepts `userId`'s changed identity: sending to that user works again. */
  acceptIdentity(userId: string): Promise<KnownUser> {
    return this.run().e2e.acceptIdentity(userId);
  }

  /** Catches up with the group's chain on the server (`isForced`: even if checked on this connection). */
  refreshGroup(chatId: string, isForced = false): Promise<void> {
    return this.run().groups.refresh(chatId, isForced);
  }

  /** The membership this device verified for group `chatId`, if it knows the group. */
  groupState(chatId: string): Promise<GroupState | undefined> {
    return this.run().groups.groupState(chatId);
  }

  /** Checks one membership operation against the verified chain (its writes are not stored). */
  receiveGroupOperation(message: Message): Promise<OperationOutcome> {
    return this.run().groups.receiveOperation(message);
  }

  /** Publishes what this device's prekeys need now (a first bundle, a refill, a rotation); needs a connection. */
  maintainPreKeys(): Promise<void> {
    return this.run().e2e.maintainPreKeys(undefined);
  }

  /** Sends whatever is queued now (e.g. messages another process added), if connected. */
  async flushOutbox(): Promise<void> {
    await this.current?.outbox.flushAll();
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
    const ready = this.current?.api.ready();
    if (ready !== undefined) return Promise.resolve(ready);
    const { state } = this.monitor.status;
    if (isFinal(state)) return Promise.reject(this.notConnectedError(`the session is ${state}`));
    const limit = deadline(this.clock, options.timeoutMs, "waiting for a connection", options.signal);
    const { promise, resolve, reject } = Promise.withResolvers<Connection>();
    const off = this.monitor.events.on("change", (status) => {
      const connection = this.current?.api.ready();
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
    const { receiver, api } = this.run();
    await receiver.drained();
    const connection = api.ready();
    if (connection === undefined) throw this.notConnectedError("cannot confirm acks");
    receiver.flushAcks();
    const acks = receiver.currentAcks();
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
    this.current?.receiver.stopReceiving();
  }

  private async stopRun(run: SessionUnits): Promise<void> {
    run.receiver.stopReceiving();
    run.cancelPoll?.();
    await run.receiver.drained();
    run.receiver.flushAcks();
    run.lifetime.abort(new Error("session stopped"));
    if (isSwitchingTransports(this.transports)) this.transports.dispose();
    await run.loop;
    await run.outbox.stop();
    this.monitor.dispatch({ type: "stopped", atMs: this.clock.nowMs() });
    if (this.current === run) this.current = undefined;
  }

  /** The units of the running session; throws before start(). */
  private run(): SessionUnits {
    if (this.current === undefined) throw new Error("the session is not started");
    return this.current;
  }

  private groupAdmin(options: WaitOptions): GroupAdminPort {
    const { groups } = this.run();
    const { profile, signer } = this.options;
    return {
      userId: profile.userId,
      deviceId: profile.deviceId,
      signer,
      groups,
      createChat: ({ chatId, title, genesis }) =>
        this.request(
          "createChat",
          { kind: ChatKind.CHAT_KIND_GROUP, memberUserIds: [], title, chatId, genesis },
          options,
        ),
      sendMessage: (request) => this.request("sendMessage", request, options),
      nowMs: () => this.clock.nowMs(),
    };
  }

  private startOutboxPoll(run: SessionUnits, intervalMs: number): void {
    const tick = (): void => {
      drop(
        run.outbox.flushAll().finally(() => {
          this.shell.queuedCount.refresh();
          if (!run.lifetime.signal.aborted) run.cancelPoll = this.clock.setTimer(tick, intervalMs);
        }),
        (error) => {
          this.report("polling the outbox", error);
        },
      );
    };
    run.cancelPoll = this.clock.setTimer(tick, intervalMs);
  }

  private report(context: string, error: unknown): void {
    reportProblem(this.events, this.logger, context, error);
  }

  private notConnectedError(prefix: string): RemessengerError {
    const failure = this.monitor.status.lastFailure;
    return new RemessengerError(
      ErrorCode.ERROR_CODE_UNAVAILABLE,
      failure === undefined ? prefix : `${prefix}: ${failure.reason}`,
    );
  }
}
