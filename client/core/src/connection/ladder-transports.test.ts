import { describe, expect, it, vi } from "vitest";
import { ManualClock, settle } from "../../../test/manual-clock.ts";
import { systemClock } from "../runtime/clock.ts";
import type { Transport, TransportFactory, TransportHandlers, TransportKind } from "./transport.ts";
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

/** A pipe that connects at once (`isUp`) or is refused at once; counts the pipes made (races and probes). */
function countingFactory(kind: TransportKind, isUp: boolean, made: TransportKind[]): TransportFactory {
  return {
    kind,
    create(handlers: TransportHandlers): Transport {
      made.push(kind);
      let isOpen = false;
      return {
        kind,
        bufferedAmount: 0,
        closeReason: undefined,
        connect: () => {
          if (!isUp) return Promise.reject(new Error(`${kind} refused`));
          isOpen = true;
          return Promise.resolve();
        },
        send: () => undefined,
        close: (code, reason) => {
          if (!isOpen) return;
          isOpen = false;
          handlers.onClose({ code, reason, isLocal: true });
        },
      };
    },
  };
}

describe("a ladder whose session stops and starts again", () => {
  it("probes no more after dispose, and probes again once a new connect goes through it", async () => {
    const clock = new ManualClock();
    const made: TransportKind[] = [];
    const ladder = new TransportLadder({
      rungs: [countingFactory("websocket", false, made), countingFactory("https", true, made)],
      clock,
      timing: { raceStaggerMs: 0 },
    });
    const first = ladder.create(handlers);
    await first.connect({ signal: new AbortController().signal, timeoutMs: 1_000 });
    expect(first.kind).toBe("https");
    const probes = (): number => made.filter((kind) => kind === "websocket").length;
    const raced = probes();
    // The session stops: the connection closes and the ladder is disposed; a minute passes.
    ladder.dispose();
    first.close(1000, "session stopped");
    await clock.advance(60_000);
    await settle();
    expect(probes()).toBe(raced);
    // The session starts again: the better rung is raced or probed again on the new connection.
    const second = ladder.create(handlers);
    await second.connect({ signal: new AbortController().signal, timeoutMs: 1_000 });
    const afterConnect = probes();
    await clock.advance(60_000);
    await settle();
    expect(probes()).toBeGreaterThan(afterConnect);
    ladder.dispose();
  });
});
