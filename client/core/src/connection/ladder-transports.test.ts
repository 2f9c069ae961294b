import { describe, expect, it, vi } from "vitest";
import { systemClock } from "../runtime/clock.ts";
import type { Transport, TransportFactory, TransportKind } from "./transport.ts";
import { TransportLadder } from "./ladder-transports.ts";

/** A pipe whose connect settles only when its signal aborts (a path that goes silent). */
function silentFactory(kind: TransportKind, closes: string[], trying: string[]): TransportFactory {
  return {
    kind,
    create(): Transport {
      return {
        kind,
        bufferedAmount: 0,
        closeReason: undefined,
        connect: ({ signal }) =>
          new Promise((_resolve, reject) => {
            trying.push(kind);
            signal.addEventListener("abort", () => reject(new Error(`${kind} gave up`)), { once: true });
          }),
        send: () => undefined,
        close: (_code, reason) => {
          closes.push(`${kind}: ${reason}`);
        },
      };
    },
  };
}

const handlers = { onFrame: () => undefined, onClose: () => undefined };

describe("a racing connect over the ladder", () => {
  it("ends when the caller gives up, even while every candidate is still trying", async () => {
    const closes: string[] = [];
    const trying: string[] = [];
    const ladder = new TransportLadder({
      rungs: [silentFactory("websocket", closes, trying), silentFactory("https", closes, trying)],
      clock: systemClock,
      timing: { raceStaggerMs: 1 },
    });
    const transport = ladder.create(handlers);
    const caller = new AbortController();
    const connecting = transport.connect({ signal: caller.signal, timeoutMs: 60_000 });
    await vi.waitFor(() => {
      expect(trying).toEqual(["websocket", "https"]);
    });
    caller.abort(new Error("the session's deadline passed"));
    await expect(connecting).rejects.toThrow("the session's deadline passed");
    // Nothing is left trying in the background, and no rung is blamed for the caller's abort.
    expect(closes.sort()).toEqual(["https: the attempt was given up", "websocket: the attempt was given up"]);
    expect(ladder.health.every((rung) => rung.failures === 0)).toBe(true);
    ladder.dispose();
  });
});
