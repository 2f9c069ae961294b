/**
 * The session's clocks: every deadline and interval its units keep, in one
 * typed object with defaults an app can override in part.
 */
import { type BackoffPolicy, DEFAULT_BACKOFF } from "../runtime/backoff.ts";

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

export interface WaitOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}
