/**
 * The connection state every UI shows: one value saying which pipe is in use,
 * whether we are connecting, connected, degraded or offline, why the last
 * attempt failed, what is queued, and when the next retry comes. No failure is
 * silent: each one lands here with a reason.
 *
 * `reduceConnection` is the pure transition function; `ConnectionMonitor`
 * holds the current value and emits it on change. With the transport ladder
 * (several pipes raced and ranked) the state names the active pipe and
 * carries every pipe's health.
 */
import type { TransportKind } from "./transport.ts";
import { TypedEmitter } from "../runtime/typed-emitter.ts";

export type ConnectionState =
  /** Created, not started: nothing attempted yet. */
  | "idle"
  /** Opening a pipe and proving the device's identity; nothing can be sent yet. */
  | "connecting"
  /** Logged in and subscribed, receiving what queued up while away (before sync_complete). */
  | "syncing"
  /** Logged in and live: sends go out at once, pushes arrive as they happen. */
  | "connected"
  /** Logged in, but the link stalls: a ping is overdue. Still usable; dropped if it does not recover. */
  | "degraded"
  /** No usable connection; the next attempt is at `nextRetryAtMs`. Sends wait in the outbox. */
  | "offline"
  /** The server refused this device for good (unknown device, wrong key): no more retries. */
  | "refused"
  /** The application stopped the session. */
  | "stopped";

export interface ConnectionFailure {
  /** For people: "cannot reach ws://host/v1/ws: connection refused". */
  reason: string;
  /** Stable code when the server gave one ("UNAUTHENTICATED"); undefined for network faults. */
  code: string | undefined;
  atMs: number;
}

/** One pipe's health as the transport ladder sees it. */
export interface TransportHealth {
  readonly kind: TransportKind;
  /** Consecutive failures (connects, early drops, failed probes). */
  readonly failures: number;
  readonly lastFailure: ConnectionFailure | undefined;
  readonly lastSuccessAtMs: number | undefined;
  /** Not tried or probed again before this time. */
  readonly retryAtMs: number;
  /** Consecutive successful probes while another pipe is in use. */
  readonly probeSuccesses: number;
  /** Times it dropped soon after being used; each one doubles the probes needed to climb back. */
  readonly flaps: number;
}

export interface ConnectionStatus {
  readonly state: ConnectionState;
  /** The pipe in use, or being tried; undefined before the first attempt. */
  readonly transport: TransportKind | undefined;
  /** When the current state began. */
  readonly sinceMs: number;
  /** Why the most recent attempt or connection failed; kept after recovery for display. */
  readonly lastFailure: ConnectionFailure | undefined;
  /** Consecutive failures since the last stable connection (drives the backoff). */
  readonly failedAttempts: number;
  /** When the next attempt starts (state "offline" only). */
  readonly nextRetryAtMs: number | undefined;
  /** Messages in the outbox the server has not accepted yet. */
  readonly queuedCount: number;
  /** Whether this connection finished the initial sync. */
  readonly isSynced: boolean;
  /** Every pipe the client may use, best first (one entry when there is no ladder). */
  readonly transports: readonly TransportHealth[];
}

export type ConnectionEvent =
  | { type: "connecting"; transport: TransportKind; atMs: number }
  /** Login succeeded on `transport`; `isSubscribing` when pushes (and a sync) will follow. */
  | { type: "loggedIn"; transport: TransportKind; isSubscribing: boolean; atMs: number }
  | { type: "synced"; atMs: number }
  | { type: "stalled"; atMs: number }
  | { type: "recovered"; atMs: number }
  /** The attempt or connection failed; `wasStable` when it had been up long enough to reset the backoff. */
  | { type: "lost"; failure: ConnectionFailure; wasStable: boolean; nextRetryAtMs: number }
  | { type: "refused"; failure: ConnectionFailure }
  | { type: "stopped"; atMs: number }
  /** The application started the session (again): a stopped one is idle until it connects. */
  | { type: "restarted"; atMs: number }
  | { type: "queued"; count: number }
  /** The transport ladder's view of its pipes changed. */
  | { type: "health"; transports: readonly TransportHealth[] };

export function initialConnectionStatus(nowMs: number): ConnectionStatus {
  return {
    state: "idle",
    transport: undefined,
    sinceMs: nowMs,
    lastFailure: undefined,
    failedAttempts: 0,
    nextRetryAtMs: undefined,
    queuedCount: 0,
    isSynced: false,
    transports: [],
  };
}

/** Whether requests can be sent in this state. */
export function isLoggedIn(state: ConnectionState): boolean {
  return state === "syncing" || state === "connected" || state === "degraded";
}

/** Whether the session will never connect again by itself. */
export function isFinal(state: ConnectionState): boolean {
  return state === "refused" || state === "stopped";
}

/** The next status; the same object when the event changes nothing. */
export function reduceConnection(status: ConnectionStatus, event: ConnectionEvent): ConnectionStatus {
  if (isFinal(status.state) && event.type !== "queued" && event.type !== "health" && event.type !== "restarted")
    return status;
  switch (event.type) {
    case "connecting":
      return {
        ...status,
        state: "connecting",
        transport: event.transport,
        sinceMs: event.atMs,
        nextRetryAtMs: undefined,
        isSynced: false,
      };
    case "loggedIn":
      return {
        ...status,
        state: event.isSubscribing ? "syncing" : "connected",
        transport: event.transport,
        sinceMs: event.atMs,
        isSynced: !event.isSubscribing,
      };
    case "synced":
      if (!isLoggedIn(status.state) || status.isSynced) return status;
      return status.state === "degraded"
        ? { ...status, isSynced: true }
        : { ...status, state: "connected", sinceMs: event.atMs, isSynced: true };
    case "stalled":
      if (status.state !== "connected" && status.state !== "syncing") return status;
      return { ...status, state: "degraded", sinceMs: event.atMs };
    case "recovered":
      if (status.state !== "degraded") return status;
      return { ...status, state: status.isSynced ? "connected" : "syncing", sinceMs: event.atMs };
    case "lost":
      return {
        ...status,
        state: "offline",
        sinceMs: event.failure.atMs,
        lastFailure: event.failure,
        failedAttempts: event.wasStable ? 1 : status.failedAttempts + 1,
        nextRetryAtMs: event.nextRetryAtMs,
        isSynced: false,
      };
    case "refused":
      return {
        ...status,
        state: "refused",
        sinceMs: event.failure.atMs,
        lastFailure: event.failure,
        nextRetryAtMs: undefined,
        isSynced: false,
      };
    case "stopped":
      return { ...status, state: "stopped", sinceMs: event.atMs, nextRetryAtMs: undefined, isSynced: false };
    case "restarted":
      // Only a stop ends with a restart; a refusal stays final until the application stops the session.
      if (status.state !== "stopped") return status;
      return { ...status, state: "idle", sinceMs: event.atMs, failedAttempts: 0, nextRetryAtMs: undefined };
    case "queued":
      return event.count === status.queuedCount ? status : { ...status, queuedCount: event.count };
    case "health":
      return { ...status, transports: event.transports };
  }
}

export interface ConnectionMonitorEvents {
  change: ConnectionStatus;
}

/** Holds the current status and tells listeners each time it changes. */
export class ConnectionMonitor {
  readonly events: TypedEmitter<ConnectionMonitorEvents>;
  private current: ConnectionStatus;

  constructor(nowMs: number, onListenerError: (error: unknown) => void) {
    this.current = initialConnectionStatus(nowMs);
    this.events = new TypedEmitter(onListenerError);
  }

  get status(): ConnectionStatus {
    return this.current;
  }

  dispatch(event: ConnectionEvent): void {
    const next = reduceConnection(this.current, event);
    if (next === this.current) return;
    this.current = next;
    this.events.emit("change", next);
  }
}
