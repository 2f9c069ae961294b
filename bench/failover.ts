/**
 * Failover and climb-back times of the transport ladder, measured in the
 * censorship harness (scripts/censorship-harness.ts): real namespaces, real
 * nftables filters, a real Unbound in front of the server's DNS gateway.
 *
 * - failover: the filter goes on → the first message written after it
 *   reaches the other client (detection + switch + resend), per rung change;
 * - climb-back: the filter is lifted → the client reports WebSocket again;
 * - flaps: connections over anything but WebSocket after the climb-back,
 *   before the next block (0 means it stayed).
 *
 * Each scenario runs several block cycles (a stable gap between them) with
 * two clients, so each row has clients × cycles samples; the scenarios run
 * side by side in their own namespaces. No other messenger switches between
 * these pipes by itself, so the figures are set against the aims of issue 7
 * rather than a peer.
 */
import { type ScenarioResult, runScenario } from "../scripts/censorship-harness.ts";
import type { BenchOptions, BenchReport, Benchmark } from "./benchmark.ts";
import { percentile } from "./pair-load.ts";

interface Measured {
  scenario: string;
  /** The stage label in the harness, and what it means for the ladder. */
  stage: string;
  change: string;
  aimMs: number;
}

const MEASURED: readonly Measured[] = [
  { scenario: "reset-ws", stage: "WebSocket reset", change: "ws reset after upgrade → https", aimMs: 3_000 },
  { scenario: "drop-ws", stage: "WebSocket dropped", change: "ws blackholed → https", aimMs: 8_000 },
  { scenario: "blackhole-https", stage: "server TCP blackholed", change: "ws+https blackholed → doh", aimMs: 8_000 },
  { scenario: "block-doh", stage: "DoH blackholed too", change: "doh blackholed → dns", aimMs: 10_000 },
  {
    scenario: "udp53-only",
    stage: "only UDP 53 to the resolver",
    change: "all but UDP 53 dropped → dns",
    aimMs: 8_000,
  },
];
const CLIMB_BACK_AIM_MS = 30_000;

export const failover: Benchmark = {
  name: "failover",
  summary: "transport ladder: failover p50/p95 per rung change and climb-back to WebSocket, in the censorship harness",
  async run(options: BenchOptions): Promise<BenchReport> {
    const cycles = options.isQuick ? 1 : 3;
    const messages = options.isQuick ? 60 : 200;
    const scenarios = [...new Set(MEASURED.map((m) => m.scenario))];
    options.log(`${scenarios.length} scenarios side by side, ${cycles} block cycle(s) each, ${messages} messages`);
    const results = new Map<string, ScenarioResult>();
    await Promise.all(
      scenarios.map(async (name) => {
        if (options.signal.aborted) throw new Error("aborted");
        const result = await runScenario(name, messages, (line) => options.log(line), cycles);
        if (result.delivered !== result.sent || result.duplicates > 0 || !result.isOrderKept) {
          throw new Error(`${name}: delivery broke (${result.delivered}/${result.sent}, ${result.duplicates} twice)`);
        }
        results.set(name, result);
      }),
    );
    const seconds = (ms: number | null): number | null => (ms === null ? null : ms / 1000);
    const rows = MEASURED.map((m) => {
      const result = results.get(m.scenario);
      const failovers = Float64Array.from(
        (result?.failovers ?? []).filter((f) => f.stage === m.stage).map((f) => f.ms),
      ).sort();
      const climbs = Float64Array.from(result?.climbBackMs ?? []).sort();
      const p95 = percentile(failovers, 0.95);
      return {
        change: m.change,
        samples: failovers.length,
        p50: seconds(percentile(failovers, 0.5)),
        p95: seconds(p95),
        aim: m.aimMs / 1000,
        isMet: p95 !== null && p95 <= m.aimMs ? "yes" : "no",
        climbP50: seconds(percentile(climbs, 0.5)),
        climbMax: seconds(climbs.length === 0 ? null : (climbs[climbs.length - 1] ?? null)),
        flaps: result?.flapsAfterClimb ?? null,
      };
    });
    return {
      name: "failover",
      title: "Transport ladder: failover and climb-back (censorship harness)",
      columns: [
        { key: "change", label: "filter → rung" },
        { key: "samples", label: "n" },
        { key: "p50", label: "failover p50 s", digits: 1 },
        { key: "p95", label: "p95 s", digits: 1 },
        { key: "aim", label: "aim p95 ≤ s", digits: 0 },
        { key: "isMet", label: "met" },
        { key: "climbP50", label: "back on ws p50 s", digits: 1 },
        { key: "climbMax", label: "max s", digits: 1 },
        { key: "flaps", label: "flaps" },
      ],
      rows,
      notes: [
        "failover: filter on → first message written after it delivered to the other client (detection, switch, resend).",
        `back on ws: filter lifted → the client reports WebSocket again (aim ≤ ${CLIMB_BACK_AIM_MS / 1000} s); flaps: later connections over another rung before the next block.`,
        `${cycles} block cycle(s) × 2 clients per scenario; with so few samples p95 is close to the maximum.`,
        "The clients run the product's default timing (keep-alive ping every 20 s, a quick 3 s ping when a request meets 1.5 s of silence).",
      ],
    };
  },
};
