/**
 * Keeps one logged-in connection honest: a keep-alive ping after each
 * answered one, and a quick ping when a request waits on a silent server
 * (a stall under a sending user is found in seconds, not at the next
 * keep-alive).
 *
 * Invariants:
 * - At most one ping is in flight per connection.
 * - A ping unanswered for `degradedAfterMs` marks the status degraded; one
 *   unanswered by its deadline on an open pipe closes the connection (the
 *   keeper then reconnects).
 */
import { ErrorCode, isError } from "@remessenger/protocol";
import type { ConnectionMonitor } from "../connection/connection-state.ts";
import { CLOSE_GOING_AWAY } from "../connection/transport.ts";
import type { Clock } from "../runtime/clock.ts";
import { drop } from "../runtime/drop.ts";
import type { Connection } from "./connection.ts";
import type { SessionTiming } from "./session-timing.ts";

export interface PingerOptions {
  monitor: ConnectionMonitor;
  clock: Clock;
  timing: SessionTiming;
  /** A ping failed in a way that is not a stall (a bug): reported, not thrown. */
  onError: (error: unknown) => void;
}

/** Starts pinging `connection`; returns the function that stops it. */
export function startPinger(connection: Connection, options: PingerOptions): () => void {
  const { clock, timing } = options;
  let isStopped = false;
  let pinging: Promise<void> | undefined;
  const ping = (timeoutMs: number): Promise<void> =>
    (pinging ??= pingOnce(connection, timeoutMs, options).finally(() => {
      pinging = undefined;
    }));
  let cancelKeepAlive = (): void => undefined;
  const scheduleKeepAlive = (): void => {
    cancelKeepAlive = clock.setTimer(() => {
      drop(
        ping(timing.pingTimeoutMs).then(() => {
          if (!isStopped && connection.isOpen) scheduleKeepAlive();
        }),
        options.onError,
      );
    }, timing.pingIntervalMs);
  };
  // The stall watch looks twice per `stallAfterMs`: a request waiting on a silent server gets a quick ping.
  let cancelStallWatch = (): void => undefined;
  const watchStalls = (): void => {
    cancelStallWatch = clock.setTimer(
      () => {
        if (isStopped || !connection.isOpen) return;
        if (pinging === undefined && connection.quietWhileWaitingMs(clock.nowMs()) >= timing.stallAfterMs) {
          drop(ping(timing.stallPingTimeoutMs), options.onError);
        }
        watchStalls();
      },
      Math.max(100, timing.stallAfterMs / 2),
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

async function pingOnce(connection: Connection, timeoutMs: number, options: PingerOptions): Promise<void> {
  const { clock, monitor } = options;
  const cancelDegrade = clock.setTimer(() => {
    monitor.dispatch({ type: "stalled", atMs: clock.nowMs() });
  }, options.timing.degradedAfterMs);
  try {
    await connection.request("ping", { clientTimeMs: clock.nowMs() }, { timeoutMs });
    monitor.dispatch({ type: "recovered", atMs: clock.nowMs() });
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
