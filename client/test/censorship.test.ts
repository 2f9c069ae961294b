/**
 * The censorship harness as tests: for each scenario two clients exchange 300
 * messages while the censor's filters come and go, in a network of real
 * namespaces with real nftables and tc rules, a real Unbound as the clients'
 * resolver and the server's DNS gateway behind it. Where the lab cannot be
 * built (not root, no nft), these tests fail and say why: a skipped test is a
 * failing one.
 *
 * Scenarios run side by side, three at a time (each in its own namespaces):
 * they mostly wait for filters to bite and lift, so three take about as long
 * as one, while the clients' timers still run on time on two cores.
 */
import { describe, expect, it } from "vitest";
import { SCENARIOS, runScenario, summaryLine } from "../../scripts/censorship-harness.ts";

const SIDE_BY_SIDE = 3;
let running = 0;
const waiting: Array<() => void> = [];

/** Runs `body` once fewer than SIDE_BY_SIDE scenarios are running. */
async function inTurn<T>(body: () => Promise<T>): Promise<T> {
  while (running >= SIDE_BY_SIDE) await new Promise<void>((resolve) => waiting.push(resolve));
  running += 1;
  try {
    return await body();
  } finally {
    running -= 1;
    waiting.shift()?.();
  }
}

describe.concurrent("censorship scenarios", () => {
  for (const name of Object.keys(SCENARIOS)) {
    it(`${name}: loses nothing, duplicates nothing, keeps each sender's order, reports the state truly, and climbs back`, async ({
      annotate,
    }) => {
      // runScenario fails unless both clients report WebSocket again after every block.
      const result = await inTurn(() => runScenario(name, 300));
      await annotate(summaryLine(result)); // the harness's one-line summary, in the test report
      expect(result.delivered).toBe(result.sent);
      expect(result.duplicates).toBe(0);
      expect(result.isOrderKept).toBe(true);
      expect(result.stateMismatches).toEqual([]);
      expect(result.hiddenStates).toEqual([]);
      expect(result.climbBackMs).toHaveLength(2);
    }, 600_000);
  }
});
