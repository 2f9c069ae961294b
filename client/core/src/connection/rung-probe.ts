/**
 * A probe of one rung of the transport ladder while another carries the
 * connection: opens a pipe, waits for the server's hello, pings it a few
 * times a little apart, and closes it. Passing proves the rung carries
 * traffic, not only a handshake.
 */
import { decodeServerFrame, encodeClientFrame, type ServerBodyFrame } from "@remessenger/protocol";
import { type Clock, abortReason, pause } from "../runtime/clock.ts";
import { CLOSE_NORMAL, type TransportFactory } from "./transport.ts";

/** A probe that has not finished within this long failed. */
const PROBE_TIMEOUT_MS = 8_000;
/** Pings a probe sends, this far apart, after the hello. */
const PROBE_PINGS = 2;
const PROBE_SOAK_MS = 1_000;

/**
 * Opens a pipe of this rung and checks it carries traffic for a little while:
 * the server's hello, then pings PROBE_SOAK_MS apart, each answered. A censor
 * that lets a handshake through and kills the flow after it fails the probe.
 */
export async function probeRung(factory: TransportFactory, clock: Clock, signal: AbortSignal): Promise<void> {
  const frames: ServerBodyFrame[] = [];
  let wake: (() => void) | undefined;
  let closedWith: string | undefined;
  const transport = factory.create({
    onFrame: (bytes) => {
      try {
        frames.push(decodeServerFrame(bytes));
      } catch {
        closedWith = "the server sent an undecodable frame";
      }
      wake?.();
    },
    onClose: (reason) => {
      closedWith = reason.reason;
      wake?.();
    },
  });
  const timeout = new AbortController();
  const cancelTimer = clock.setTimer(() => {
    timeout.abort(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`));
  }, PROBE_TIMEOUT_MS);
  const limit = AbortSignal.any([signal, timeout.signal]);
  const until = async (test: () => boolean): Promise<void> => {
    while (!test()) {
      if (closedWith !== undefined) throw new Error(closedWith);
      if (limit.aborted) throw abortReason(limit);
      await new Promise<void>((resolve) => {
        wake = resolve;
        limit.addEventListener("abort", () => resolve(), { once: true });
      });
      wake = undefined;
    }
  };
  try {
    await transport.connect({ signal: limit, timeoutMs: PROBE_TIMEOUT_MS });
    await until(() => frames.some((f) => f.body.$case === "hello"));
    for (let requestId = 1; requestId <= PROBE_PINGS; requestId++) {
      if (requestId > 1) await pause(clock, PROBE_SOAK_MS, limit);
      transport.send(
        encodeClientFrame({ requestId, request: { $case: "ping", value: { clientTimeMs: clock.nowMs() } } }),
      );
      await until(() => frames.some((f) => f.requestId === requestId));
    }
  } finally {
    cancelTimer();
    transport.close(CLOSE_NORMAL, "probe done");
  }
}
