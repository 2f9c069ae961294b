import { describe, expect, it } from "vitest";
import { FANOUT_SLICE, SlicedDelivery } from "./sliced-delivery.ts";

/** Listeners for `users` user ids that record (user, event) in one shared log. */
function recorder(users: number): { listeners: Map<string, Set<(event: string) => void>>; log: string[] } {
  const log: string[] = [];
  const listeners = new Map<string, Set<(event: string) => void>>();
  for (let i = 0; i < users; i += 1) listeners.set(`u${i}`, new Set([(event) => log.push(`u${i}:${event}`)]));
  return { listeners, log };
}

const ids = (count: number): string[] => Array.from({ length: count }, (_, i) => `u${i}`);
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("SlicedDelivery", () => {
  it("delivers a small audience at once, synchronously", () => {
    const { listeners, log } = recorder(3);
    new SlicedDelivery(listeners).hand(["u0", "u2", "nobody"], "a");
    expect(log).toEqual(["u0:a", "u2:a"]);
  });

  it("delivers a large audience in slices of turns, and what comes after it only after it, each user in order", async () => {
    const users = FANOUT_SLICE * 2 + 10;
    const { listeners, log } = recorder(users);
    const slices = new SlicedDelivery(listeners);
    slices.hand(ids(users), "big");
    slices.hand(["u0", "u1"], "small");
    expect(log).toEqual([]);
    await turn();
    expect(log).toHaveLength(FANOUT_SLICE);
    for (let round = 0; round < 5 && slices.queued > 0; round += 1) await turn();
    expect(slices.queued).toBe(0);
    expect(log).toHaveLength(users + 2);
    expect(log.slice(-2)).toEqual(["u0:small", "u1:small"]);
    expect(log.filter((entry) => entry.startsWith("u0:"))).toEqual(["u0:big", "u0:small"]);
  });
});
