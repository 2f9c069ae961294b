/**
 * `npm run bench`: runs each benchmark in turn and prints its table (or, with
 * --json, one JSON document on stdout). Progress goes to stderr. Benchmarks
 * assert nothing about time; this exits non-zero only when one failed to run.
 *
 *   npm run bench -- [--only NAME]... [--quick] [--json]
 *
 * Adding a benchmark: one file in bench/ exporting a `Benchmark`
 * (benchmark.ts), and one entry in BENCHMARKS below.
 *
 * Ctrl-C (or SIGTERM) aborts the running benchmark; every process it started
 * is stopped before exit (teardown.ts). A second Ctrl-C kills them at once.
 */
import { parseArgs } from "node:util";
import type { BenchReport, Benchmark } from "./benchmark.ts";
import { clusterThroughput } from "./cluster-throughput.ts";
import { dnsTunnel } from "./dns-tunnel.ts";
import { e2eCrypto } from "./e2e-crypto.ts";
import { groupCrypto } from "./group-crypto.ts";
import { failover } from "./failover.ts";
import { groupFanout } from "./group-fanout.ts";
import { spineThroughput } from "./spine-throughput.ts";
import { formatReport } from "./table.ts";
import { stopAll } from "./teardown.ts";

const BENCHMARKS: readonly Benchmark[] = [
  spineThroughput,
  clusterThroughput,
  dnsTunnel,
  e2eCrypto,
  failover,
  groupCrypto,
  groupFanout,
];

const USAGE = `Usage: npm run bench -- [--only NAME]... [--quick] [--json]

  --only NAME   run only this benchmark (repeatable): ${BENCHMARKS.map((b) => b.name).join(", ")}
  --quick       short runs, a smoke check of the figures
  --json        print the results as JSON on stdout (progress stays on stderr)

${BENCHMARKS.map((b) => `  ${b.name.padEnd(12)}${b.summary}`).join("\n")}
`;

interface Failure {
  name: string;
  error: string;
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        only: { type: "string", multiple: true },
        quick: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const names = values.only ?? BENCHMARKS.map((b) => b.name);
  const unknown = names.filter((name) => !BENCHMARKS.some((b) => b.name === name));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark: ${unknown.join(", ")}\n\n${USAGE}`);
    return 2;
  }
  const selected = BENCHMARKS.filter((b) => names.includes(b.name));

  const startedAt = performance.now();
  const log = (line: string): void => {
    const elapsed = ((performance.now() - startedAt) / 1000).toFixed(1).padStart(6);
    process.stderr.write(`[${elapsed} s] ${line}\n`);
  };
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      log(`${signal} again: killing what is left`);
      process.exit(130); // the exit hook in teardown.ts SIGKILLs every tracked process
    }
    log(`${signal}: stopping the benchmark and everything it started...`);
    controller.abort(new Error(`interrupted by ${signal}`));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const reports: BenchReport[] = [];
  const failures: Failure[] = [];
  try {
    for (const benchmark of selected) {
      if (controller.signal.aborted) break;
      const started = performance.now();
      log(`== ${benchmark.name}: ${benchmark.summary}${values.quick ? " (quick)" : ""}`);
      try {
        const report = await benchmark.run({ isQuick: values.quick, signal: controller.signal, log });
        reports.push(report);
        log(`== ${benchmark.name} done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
        if (!values.json) console.log(`\n${formatReport(report)}\n`);
      } catch (error) {
        if (controller.signal.aborted) break;
        failures.push({
          name: benchmark.name,
          error: error instanceof Error ? (error.stack ?? error.message) : String(error),
        });
        log(`== ${benchmark.name} failed: ${String(error)}`);
      } finally {
        await stopAll(log);
      }
    }
  } finally {
    await stopAll(log);
  }

  if (values.json) console.log(JSON.stringify({ isQuick: values.quick, reports, failures }, null, 2));
  else for (const failure of failures) console.log(`benchmark ${failure.name} failed:\n${failure.error}\n`);
  if (controller.signal.aborted) return 130;
  return failures.length > 0 ? 1 : 0;
}

process.exitCode = await main();
