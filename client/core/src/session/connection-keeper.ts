/**
 * Keeps one device connected: opens the pipe, logs in, subscribes, keeps
 * the connection alive (pinger, prekey upkeep) and, after any drop,
 * reconnects with backoff and jitter, or at once when the transport ladder
 * asks to move to a better pipe.
 *
 * Invariants:
 * - One connection at a time; it is attached to the ServerApi only while
 *   logged in, and detached (and closed) before the next attempt starts.
 * - Every failure reaches the ConnectionMonitor with its reason: `lost`
 *   with the next retry time, or `refused` (the server refused this device,
 *   or says it belongs to another user), after which the loop ends.
 * - A connection up `stableAfterMs` resets the backoff when it drops; a
 *   switch the ladder asked for is no failure.
 * - On each login: the receiver starts a fresh ack window, each group's
 *   chain is compared with the server's again before its next send, the
 *   prekeys are looked after, and the outbox is flushed after the
 *   subscription.
 */
import {
  ErrorCode,
  RemessengerError,
  type PreKeyStock,
  type ServerPush,
  errorCodeName,
  isError,
} from "@remessenger/protocol";
import type { ConnectionFailure, ConnectionMonitor } from "../connection/connection-state.ts";
import {
  CLOSE_GOING_AWAY,
  CLOSE_NORMAL,
  type TransportCloseReason,
  type TransportFactory,
  type TransportKind,
} from "../connection/transport.ts";
import type { DeviceSigner } from "../crypto/device-signer.ts";
import type { PairwiseSessions } from "../e2e/pairwise-sessions.ts";
import type { GroupSessions } from "../group/group-sessions.ts";
import { backoffDelay } from "../runtime/backoff.ts";
import { type Clock, pause } from "../runtime/clock.ts";
import { drop } from "../runtime/drop.ts";
import type { Logger } from "../runtime/logger.ts";
import type { DeviceProfile } from "../store/client-store.ts";
import { Connection } from "./connection.ts";
import { loginDevice } from "./device-auth.ts";
import { startPinger } from "./pinger.ts";
import type { ServerApi } from "./server-api.ts";
import { type SessionEmitter, reportProblem } from "./session-events.ts";
import type { SessionTiming } from "./session-timing.ts";

/** How often a logged-in session checks whether a prekey is due (rotation, expired grace); the login checks too. */
export const PREKEY_UPKEEP_INTERVAL_MS = 60 * 60 * 1000;

/** Where the pushes of a connection go (the Receiver). */
export interface PushSink {
  /** A new connection logged in: acks start over from what is stored. */
  startConnection(): void;
  take(connection: Connection, push: ServerPush): void;
}

/** Sends the outbox once a connection is up (the OutboxSender). */
export interface OutboxFlusher {
  flushAll(): Promise<void>;
}

export interface ConnectionKeeperOptions {
  profile: DeviceProfile;
  signer: DeviceSigner;
  transports: TransportFactory;
  monitor: ConnectionMonitor;
  api: ServerApi;
  receiver: PushSink;
  outbox: OutboxFlusher;
  e2e: PairwiseSessions;
  groups: GroupSessions;
  events: SessionEmitter;
  clock: Clock;
  random: () => number;
  logger: Logger;
  timing: SessionTiming;
  /** Receive pushes (subscribe after login). */
  isSubscribing: boolean;
}

type ServeOutcome =
  { kind: "lost"; failure: ConnectionFailure; wasStable: boolean } | { kind: "refused"; failure: ConnectionFailure };

export class ConnectionKeeper {
  private readonly options: ConnectionKeeperOptions;
  private wake: AbortController | undefined;
  /** The logged-in connection, for a switch the ladder asks for. */
  private live: Connection | undefined;
  /** Set when the transport ladder asked to move to a better pipe: reconnect at once. */
  private switchingTo: TransportKind | undefined;

  constructor(options: ConnectionKeeperOptions) {
    this.options = options;
  }

  /** Connects and reconnects until `signal` aborts or the server refuses this device. */
  async run(signal: AbortSignal): Promise<void> {
    const { monitor, clock, logger, timing, profile } = this.options;
    while (!signal.aborted) {
      const outcome = await this.serveOnce(signal);
      if (signal.aborted) return;
      if (outcome.kind === "refused") {
        logger.error({ deviceId: profile.deviceId, reason: outcome.failure.reason }, "the server refused this device");
        monitor.dispatch({ type: "refused", failure: outcome.failure });
        return;
      }
      // A switch the ladder asked for is no failure: reconnect at once, on the better pipe.
      const isSwitch = this.switchingTo !== undefined;
      this.switchingTo = undefined;
      const wasStable = outcome.wasStable || isSwitch;
      const attempt = wasStable ? 1 : monitor.status.failedAttempts + 1;
      const delay = isSwitch ? 0 : backoffDelay(attempt, this.options.random, timing.backoff);
      logger.info(
        { transport: this.options.transports.kind, reason: outcome.failure.reason, retryInMs: delay },
        isSwitch ? "switching transport" : "connection lost",
      );
      monitor.dispatch({ type: "lost", failure: outcome.failure, wasStable, nextRetryAtMs: clock.nowMs() + delay });
      const wake = new AbortController();
      this.wake = wake;
      await pause(clock, delay, AbortSignal.any([signal, wake.signal]));
      this.wake = undefined;
    }
  }

  /** Skips the rest of the current backoff wait (the network came back, the user asked). */
  retryNow(): void {
    this.wake?.abort();
  }

  /** Closes the connection to reconnect on `to`, which the transport ladder found better. */
  switchTo(to: TransportKind): void {
    const connection = this.live;
    if (connection === undefined) return;
    this.switchingTo = to;
    this.options.logger.info({ from: connection.kind, to }, "a better transport works again: switching");
    connection.close(CLOSE_GOING_AWAY, `switching to ${to}`);
  }

  /** One connection, from opening the pipe until it drops. Never throws. */
  private async serveOnce(signal: AbortSignal): Promise<ServeOutcome> {
    const { monitor, clock, logger, timing, profile, api } = this.options;
    monitor.dispatch({ type: "connecting", transport: this.options.transports.kind, atMs: clock.nowMs() });
    const closed = Promise.withResolvers<TransportCloseReason>();
    const holder: { connection?: Connection } = {};
    let opened;
    try {
      opened = await Connection.open(
        {
          transports: this.options.transports,
          clock,
          logger,
          onPush: (push) => {
            if (holder.connection !== undefined) this.options.receiver.take(holder.connection, push);
          },
          onClose: (reason) => {
            closed.resolve(reason);
          },
        },
        { signal, timeoutMs: timing.connectTimeoutMs },
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
    const wasStable = (): boolean => loggedInAt !== undefined && clock.nowMs() - loggedInAt >= timing.stableAfterMs;
    try {
      const requestOptions = { timeoutMs: timing.requestTimeoutMs, signal };
      let login;
      try {
        login = await loginDevice(connection, hello, this.options.signer, profile.deviceId, requestOptions);
      } catch (error) {
        if (isError(error, ErrorCode.ERROR_CODE_UNAUTHENTICATED))
          return { kind: "refused", failure: this.toFailure(error) };
        throw error;
      }
      if (login.userId !== profile.userId) {
        const reason = `the server says device ${login.deviceId} belongs to ${login.userId}, not ${profile.userId}`;
        return { kind: "refused", failure: { reason, code: undefined, atMs: clock.nowMs() } };
      }
      loggedInAt = clock.nowMs();
      this.live = connection;
      api.attach(connection);
      this.options.receiver.startConnection();
      monitor.dispatch({
        type: "loggedIn",
        transport: connection.kind,
        isSubscribing: this.options.isSubscribing,
        atMs: loggedInAt,
      });
      logger.info({ transport: connection.kind, deviceId: profile.deviceId }, "logged in");
      // A new connection: each group's chain is compared with the server's again before its next send.
      this.options.groups.setServer(api);
      this.maintainPreKeys(login.preKeyStock, "publishing prekeys");
      if (this.options.isSubscribing) await connection.request("subscribe", {}, requestOptions);
      drop(this.options.outbox.flushAll(), (error) => {
        this.report("sending the outbox", error);
      });
      stopPinger = startPinger(connection, {
        monitor,
        clock,
        timing,
        onError: (error) => {
          this.report("pinging", error);
        },
      });
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
      api.detach(connection);
      connection.close(CLOSE_NORMAL, "connection abandoned");
    }
  }

  /** While logged in, looks at the prekeys now and then: a long-lived session rotates its signed prekey on time. */
  private startPreKeyUpkeep(): () => void {
    let cancel = (): void => undefined;
    const schedule = (): void => {
      cancel = this.options.clock.setTimer(() => {
        this.maintainPreKeys(undefined, "rotating prekeys");
        schedule();
      }, PREKEY_UPKEEP_INTERVAL_MS);
    };
    schedule();
    return () => {
      cancel();
    };
  }

  private maintainPreKeys(stock: PreKeyStock | undefined, context: string): void {
    drop(this.options.e2e.maintainPreKeys(stock), (error) => {
      this.report(context, error);
    });
  }

  private report(context: string, error: unknown): void {
    reportProblem(this.options.events, this.options.logger, context, error);
  }

  private toFailure(error: unknown): ConnectionFailure {
    const atMs = this.options.clock.nowMs();
    if (error instanceof RemessengerError) return { reason: error.message, code: errorCodeName(error.code), atMs };
    return { reason: error instanceof Error ? error.message : String(error), code: undefined, atMs };
  }

  private closeFailure(reason: TransportCloseReason): ConnectionFailure {
    const who = reason.isLocal ? "closed here" : "closed by the server";
    return { reason: `${who}: ${reason.reason} (${reason.code})`, code: undefined, atMs: this.options.clock.nowMs() };
  }
}
