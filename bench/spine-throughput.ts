/**
 * Spine throughput: how many one-to-one messages a second the server takes
 * from senders, makes durable and delivers to connected receivers, with what
 * latency and memory, and how that compares with a real XMPP server.
 *
 * For each N in CLIENT_COUNTS, N clients on loopback in pairs (direct chats)
 * send 200-byte messages to their partners (pair-load.ts: a window of 32 in
 * flight per sender, cumulative acks as they go), against:
 * - our server with the embedded store (SQLite, group commit),
 * - our server with Redis (a private redis-server),
 * - Prosody (Debian's), driven the same way by an XMPP client. Prosody relays
 *   and stores nothing; every message of ours is durable before it is answered
 *   and pushed. Our rows show their throughput and p99 as ratios to Prosody's.
 * Each row gets a fresh server, so its peak RSS (VmHWM) is that row's.
 * N = 1 cannot make a pair: the smallest run is one pair.
 */
import { startRedis } from "../scripts/harness/redis.ts";
import { startServer } from "../scripts/harness/server.ts";
import type { BenchOptions, BenchReport, Benchmark, Cell } from "./benchmark.ts";
import { connectFramePairs } from "./frame-pairs.ts";
import { LoadRun, type LoadOutcome, type LoadPlan } from "./pair-load.ts";
import { cpuSeconds, machineBusySeconds, ownCpuSeconds, peakRssBytes } from "./process-stats.ts";
import {
  createProsodyHome,
  ensureProsodyInstalled,
  prosodyVersion,
  registerProsodyUsers,
  startProsody,
  type ProsodyHome,
} from "./prosody-server.ts";
import { killPid, track } from "./teardown.ts";
import { connectXmppPairs } from "./xmpp-pairs.ts";

const CLIENT_COUNTS = [2, 10, 100] as const;
const WINDOW_PER_SENDER = 32;
const FULL_PLAN: LoadPlan = {
  window: WINDOW_PER_SENDER,
  warmupMs: 1_000,
  measureMs: 8_000,
  maxMessages: 1_000_000,
  drainTimeoutMs: 15_000,
};
const QUICK_PLAN: LoadPlan = {
  window: WINDOW_PER_SENDER,
  warmupMs: 500,
  measureMs: 2_000,
  maxMessages: 250_000,
  drainTimeoutMs: 10_000,
};
const PROSODY_PASSWORD = "bench-password";
const SERVER_STOP_TIMEOUT_MS = 15_000;
const MIB = 1024 * 1024;

type System = "sqlite" | "redis" | "prosody";

const SYSTEM_LABEL: Record<System, string> = {
  sqlite: "ours ws + embedded (sqlite)",
  redis: "ours ws + redis",
  prosody: "prosody c2s (no storage)",
};

interface Measurement {
  system: System;
  clients: number;
  outcome: LoadOutcome;
  peakRssMiB: number;
  /** The redis-server's own peak, for the Redis rows. */
  redisRssMiB: number | null;
  cpu: CpuUse;
  unexpected: number;
}

export const spineThroughput: Benchmark = {
  name: "spine",
  summary: "one-to-one messages/s, latency and memory: ours (sqlite, redis) vs Prosody",
  run: runSpine,
};

async function runSpine(options: BenchOptions): Promise<BenchReport> {
  const plan = options.isQuick ? QUICK_PLAN : FULL_PLAN;
  const measurements: Measurement[] = [];
  const notes: string[] = [];

  // A row that fails is reported and skipped; the others still run.
  const failed = (what: string, error: unknown): void => {
    if (options.signal.aborted) throw error;
    const line = `${what} failed: ${firstLine(error)}`;
    options.log(`spine: ${line}`);
    notes.push(line);
  };
  for (const system of ["sqlite", "redis"] as const) {
    for (const clients of CLIENT_COUNTS) {
      options.log(`spine: ${SYSTEM_LABEL[system]}, ${clients} clients...`);
      try {
        measurements.push(await measureOurs(system, clients, plan, options));
      } catch (error) {
        failed(`${SYSTEM_LABEL[system]}, ${clients} clients`, error);
      }
    }
  }
  try {
    measurements.push(...(await measureProsody(plan, options, failed)));
  } catch (error) {
    failed("Prosody baseline", error);
  }

  notes.push(
    "Prosody relays messages and stores nothing (no offline storage, no stream management); " +
      "every message of ours is durable in the store before its sender gets the seq and before it is pushed.",
    `N clients = N/2 pairs in direct chats (N = 1 cannot pair; one pair is the smallest run), 200-byte messages, ` +
      `${plan.window} in flight per sender (send call → partner received it, and for ours the durable answer); ` +
      "receivers ack cumulatively as they go.",
    "Per message our server writes one push, one answer (the seq) and ack receipts; a sender that had acked " +
      "everything before gets no echo of its own message. Prosody writes one stanza.",
    `msgs/s = messages received by partners in the ${plan.measureMs / 1000} s measured window ` +
      `(after ${plan.warmupMs / 1000} s warm-up); latency = send call start → message received; ` +
      "peak RSS = the server process's VmHWM (ours: one Node process with its SQLite writer thread).",
    "CPU columns: cores used by the server (all threads; with redis-server for the Redis rows), by the load " +
      "generator (this process) and by everything else on the machine. Out of 2 cores: other CPU well above 0 " +
      "means the machine was shared and the row is skewed; load CPU near 1.0 means the load generator was the limit. " +
      "srv µs/msg (server CPU time per delivered message) is the figure least skewed by a shared machine.",
    `Prosody version: ${await prosodyVersion()}; the bench asserts nothing about time.`,
  );
  return { name: "spine", title: title(plan), columns: COLUMNS, rows: toRows(measurements), notes };
}

async function measureOurs(
  system: "sqlite" | "redis",
  clients: number,
  plan: LoadPlan,
  options: BenchOptions,
): Promise<Measurement> {
  const redis = system === "redis" ? await startRedis() : undefined;
  const untrackRedis =
    redis === undefined
      ? () => undefined
      : track(
          "redis-server",
          () => redis.stop(),
          () => undefined,
        );
  try {
    const server = await startServer(redis === undefined ? {} : { redisUrl: redis.url });
    const serverPid = server.pid;
    const stopServer = async (): Promise<void> => {
      const timer = setTimeout(() => killPid(serverPid), SERVER_STOP_TIMEOUT_MS);
      await server.cleanup();
      clearTimeout(timer);
    };
    const untrackServer = track("server", stopServer, () => killPid(serverPid));
    try {
      const redisPid = redis?.pid;
      const pairs = await connectFramePairs(server.url, clients, options.signal);
      try {
        const run = new LoadRun(plan);
        pairs.attach(run);
        const pids = redisPid === undefined ? [serverPid] : [serverPid, redisPid];
        const { outcome, ...cpu } = await executeWithCpu(run, pids, options.signal);
        const errors = server.logs.filter((line) => /"level":(50|60)/.test(line));
        if (errors.length > 0) options.log(`spine: server logged ${errors.length} errors, e.g. ${errors[0] ?? ""}`);
        return {
          system,
          clients,
          outcome,
          peakRssMiB: peakRssBytes(serverPid) / MIB,
          redisRssMiB: redisPid === undefined ? null : peakRssBytes(redisPid) / MIB,
          cpu,
          unexpected: pairs.unexpected + errors.length,
        };
      } finally {
        await pairs.close();
      }
    } finally {
      untrackServer();
      await stopServer();
    }
  } finally {
    untrackRedis();
    await redis?.stop();
  }
}

async function measureProsody(
  plan: LoadPlan,
  options: BenchOptions,
  failed: (what: string, error: unknown) => void,
): Promise<Measurement[]> {
  await ensureProsodyInstalled(options.log);
  const home: ProsodyHome = await createProsodyHome();
  try {
    const maxClients = Math.max(...CLIENT_COUNTS);
    const usernames = Array.from({ length: maxClients }, (_, i) => `bench${i}`);
    options.log(`spine: registering ${maxClients} Prosody users...`);
    await registerProsodyUsers(home, usernames, PROSODY_PASSWORD);
    const measurements: Measurement[] = [];
    for (const clients of CLIENT_COUNTS) {
      options.log(`spine: ${SYSTEM_LABEL.prosody}, ${clients} clients...`);
      try {
        measurements.push(await measureProsodyRow(home, usernames.slice(0, clients), plan, options));
      } catch (error) {
        failed(`${SYSTEM_LABEL.prosody}, ${clients} clients`, error);
      }
    }
    return measurements;
  } finally {
    home.remove();
  }
}

export interface CpuUse {
  /** Cores the system under test used: the server process (and redis-server). */
  serverCpuCores: number;
  /** Cores this process (the load generator) used. */
  loadCpuCores: number;
  /** Cores everything else on the machine used meanwhile. */
  otherCpuCores: number;
  /** Cores of the `partPids` given to executeWithCpu (all server processes unless told). */
  partCpuCores: number;
}

async function measureProsodyRow(
  home: ProsodyHome,
  usernames: readonly string[],
  plan: LoadPlan,
  options: BenchOptions,
): Promise<Measurement> {
  const prosody = await startProsody(home);
  try {
    const pairs = await connectXmppPairs(prosody, usernames, PROSODY_PASSWORD, options.signal);
    try {
      const run = new LoadRun(plan);
      pairs.attach(run);
      const { outcome, ...cpu } = await executeWithCpu(run, [prosody.pid], options.signal);
      return {
        system: "prosody",
        clients: usernames.length,
        outcome,
        peakRssMiB: peakRssBytes(prosody.pid) / MIB,
        redisRssMiB: null,
        cpu,
        unexpected: pairs.unexpected,
      };
    } finally {
      await pairs.close();
    }
  } finally {
    await prosody.stop();
  }
}

/**
 * Runs the load and samples CPU time at the edges of the measured window.
 * `partPids` (a subset of the server's, e.g. without redis-server) is
 * reported apart as `partCpuCores`.
 */
export async function executeWithCpu(
  run: LoadRun,
  serverPids: readonly number[],
  signal: AbortSignal,
  partPids: readonly number[] = serverPids,
): Promise<{ outcome: LoadOutcome } & CpuUse> {
  const sample = (): { server: number; part: number; load: number; machine: number; at: number } => ({
    server: serverPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    part: partPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    load: ownCpuSeconds(),
    machine: machineBusySeconds(),
    at: performance.now(),
  });
  let start = sample();
  let end = start;
  const outcome = await run.execute(signal, {
    onMeasureStart: () => (start = sample()),
    onMeasureEnd: () => (end = sample()),
  });
  const seconds = Math.max(1e-3, (end.at - start.at) / 1_000);
  const serverCpuCores = (end.server - start.server) / seconds;
  const loadCpuCores = (end.load - start.load) / seconds;
  const machineCores = (end.machine - start.machine) / seconds;
  return {
    outcome,
    partCpuCores: (end.part - start.part) / seconds,
    serverCpuCores,
    loadCpuCores,
    otherCpuCores: Math.max(0, machineCores - serverCpuCores - loadCpuCores),
  };
}

function title(plan: LoadPlan): string {
  return (
    `spine throughput: one-to-one 200-byte messages, ${plan.measureMs / 1000} s per row, ` +
    `window ${plan.window} per sender`
  );
}

const COLUMNS = [
  { key: "system", label: "transport/store" },
  { key: "clients", label: "N" },
  { key: "messagesPerSecond", label: "msgs/s" },
  { key: "p50Ms", label: "p50 ms", digits: 1 },
  { key: "p99Ms", label: "p99 ms", digits: 1 },
  { key: "peakRssMiB", label: "peak RSS MiB" },
  { key: "redisRssMiB", label: "+redis MiB" },
  { key: "serverCpuCores", label: "srv CPU", digits: 2 },
  { key: "serverCpuMicrosPerMessage", label: "srv µs/msg" },
  { key: "loadCpuCores", label: "load CPU", digits: 2 },
  { key: "otherCpuCores", label: "other CPU", digits: 2 },
  { key: "problems", label: "errors" },
  { key: "throughputVsProsody", label: "msgs/s ÷ Prosody", digits: 2 },
  { key: "p99VsProsody", label: "p99 ÷ Prosody", digits: 2 },
];

function toRows(measurements: Measurement[]): Array<Record<string, Cell>> {
  const prosodyAt = new Map(
    measurements.filter((m) => m.system === "prosody").map((m) => [m.clients, m.outcome] as const),
  );
  return measurements.map((m) => {
    const baseline = m.system === "prosody" ? undefined : prosodyAt.get(m.clients);
    const { outcome } = m;
    return {
      systemId: m.system,
      system: SYSTEM_LABEL[m.system],
      clients: m.clients,
      messagesPerSecond: outcome.messagesPerSecond,
      delivered: outcome.delivered,
      seconds: outcome.seconds,
      p50Ms: outcome.p50Ms,
      p99Ms: outcome.p99Ms,
      peakRssMiB: m.peakRssMiB,
      redisRssMiB: m.redisRssMiB,
      serverCpuCores: m.cpu.serverCpuCores,
      serverCpuMicrosPerMessage:
        outcome.messagesPerSecond > 0 ? (m.cpu.serverCpuCores / outcome.messagesPerSecond) * 1e6 : null,
      loadCpuCores: m.cpu.loadCpuCores,
      otherCpuCores: m.cpu.otherCpuCores,
      failed: outcome.failed,
      duplicates: outcome.duplicates,
      undelivered: outcome.undelivered,
      unexpected: m.unexpected,
      problems: outcome.failed + outcome.duplicates + outcome.undelivered + m.unexpected,
      throughputVsProsody: baseline === undefined ? null : outcome.messagesPerSecond / baseline.messagesPerSecond,
      p99VsProsody: ratio(outcome.p99Ms, baseline?.p99Ms ?? null),
    };
  });
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? "";
}

function ratio(ours: number | null, theirs: number | null): number | null {
  return ours === null || theirs === null || theirs === 0 ? null : ours / theirs;
}
