/**
 * The censorship harness as tests: for each scenario two clients exchange 300
 * messages while the censor's filters come and go, in a network of real
 * namespaces with real nftables and tc rules. Where the lab cannot be built
 * (not root, no nft), these tests fail and say why: a skipped test is a failing one.
 */
import { describe, expect, it } from "vitest";
import { SCENARIOS, runScenario, summaryLine } from "../../scripts/censorship-harness.ts";

describe.each(Object.keys(SCENARIOS))("censorship scenario %s", (name) => {
  it("loses nothing, duplicates nothing, keeps each sender's order, reports the state truly, and climbs back", async ({
    annotate,
  }) => {
    const result = await runScenario(name, 300);
    await annotate(summaryLine(result)); // the harness's one-line summary, in the test report
    expect(result.delivered).toBe(result.sent);
    expect(result.duplicates).toBe(0);
    expect(result.isOrderKept).toBe(true);
    expect(result.stateMismatches).toEqual([]);
    expect(result.hiddenStates).toBe(0);
    expect(result.climbBackMs.every((ms) => ms <= 30_000)).toBe(true);
  }, 300_000);
});
