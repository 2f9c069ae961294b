/**
 * Many nodes: what one-to-one messaging costs on one node and on three, and
 * against Prosody, in the same run on this machine.
 *
 * Rows (each with fresh processes), N clients in pairs (direct chats), the
 * spine load (pair-load.ts: 200-byte messages, a window per sender):
 * - 1 node, embedded store (SQLite, synchronous=FULL);
 * - 1 node, one Redis (ack once Redis ran the append; AOF everysec);
 * - 3 nodes on a Redis Cluster (3 masters + 3 replicas), the two clients of a
 *   pair on different nodes, ack after WAIT 1 (a replica has it) — the
 *   default durability on a cluster;
 * - the same with acks on the master alone, to show what WAIT costs;
 * - 3 nodes that do not coordinate at all (each on its own Redis, the two
 *   clients of a pair on the same node): what three nodes cost on these two
 *   cores without any forwarding or cross-node push, the baseline that shows
 *   what coordination itself costs;
 * - Prosody (Debian's), driven the same way by an XMPP client, relaying and
 *   storing nothing.
 * The 3-node rows start measuring once the shard placement has settled
 * (every shard held, spread over the three nodes).
 * Server CPU counts every server-side process (nodes and redis-servers);
 * "node µs/msg" counts our Node processes only, the figure to set against
 * Prosody's, which has no store.
 */
import { startRedis } from "../scripts/harness/redis.ts";
import { startRedisCluster } from "../scripts/harness/redis-cluster.ts";
import { type TestServer, startServer } from "../scripts/harness/server.ts";
import type { BenchOptions, BenchReport, Benchmark, Cell } from "./benchmark.ts";
import { SHARD_COUNT } from "../server/src/core/shard-placement.ts";
import { type FramePairs, connectFramePairs } from "./frame-pairs.ts";
import { LoadRun, type LoadOutcome, type LoadPlan } from "./pair-load.ts";
import {
  createProsodyHome,
  ensureProsodyInstalled,
  prosodyVersion,
  registerProsodyUsers,
  startProsody,
} from "./prosody-server.ts";
import { type CpuUse, executeWithCpu } from "./spine-throughput.ts";
import { killPid, track } from "./teardown.ts";
import { connectXmppPairs } from "./xmpp-pairs.ts";

const FULL = {
  clients: 40,
  plan: { window: 32, warmupMs: 1_500, measureMs: 8_000, maxMessages: 1_000_000, drainTimeoutMs: 15_000 },
};
const QUICK = {
  clients: 20,
  plan: { window: 32, warmupMs: 500, measureMs: 2_000, maxMessages: 250_000, drainTimeoutMs: 10_000 },
};
const PROSODY_PASSWORD = "bench-password";
const STOP_TIMEOUT_MS = 15_000;

type System = "embedded" | "redis" | "cluster-wait" | "cluster-master" | "independent" | "prosody";

const LABEL: Record<System, string> = {
  embedded: "ours, 1 node, embedded (sqlite)",
  redis: "ours, 1 node, one Redis",
  "cluster-wait": "ours, 3 nodes, Redis Cluster, WAIT 1",
  "cluster-master": "ours, 3 nodes, Redis Cluster, no WAIT",
  independent: "ours, 3 nodes not coordinating (baseline)",
  prosody: "prosody c2s (no storage)",
};

const NODES: Record<System, number> = {
  embedded: 1,
  redis: 1,
  "cluster-wait": 3,
  "cluster-master": 3,
  independent: 3,
  prosody: 1,
};
/** How long a 3-node row waits for the shard placement to settle before it measures. */
const PLACEMENT_TIMEOUT_MS = 30_000;

interface Row {
  system: System;
  outcome: LoadOutcome;
  cpu: CpuUse;
  /** Cores our Node processes used (no redis-server); equal to server CPU for Prosody and sqlite. */
  nodeCpuCores: number;
  unexpected: number;
}

export const clusterThroughput: Benchmark = {
  name: "cluster",
  summary: "messages/s, p99 and CPU/msg: 1 node (sqlite, Redis), 3 nodes on a Redis Cluster, vs Prosody",
  run: runCluster,
};

async function runCluster(options: BenchOptions): Promise<BenchReport> {
  const { clients, plan } = options.isQuick ? QUICK : FULL;
  const rows: Row[] = [];
  const notes: string[] = [];
  const failed = (what: string, error: unknown): void => {
    if (options.signal.aborted) throw error;
    const line = `${what} failed: ${(error instanceof Error ? error.message : String(error)).split("\n")[0] ?? ""}`;
    options.log(`cluster: ${line}`);
    notes.push(line);
  };
  for (const system of ["embedded", "redis", "cluster-wait", "cluster-master", "independent"] as const) {
    options.log(`cluster: ${LABEL[system]}, ${clients} clients...`);
    try {
      rows.push(await measureOurs(system, clients, plan, options));
    } catch (error) {
      failed(LABEL[system], error);
    }
  }
  options.log(`cluster: ${LABEL.prosody}, ${clients} clients...`);
  try {
    rows.push(await measureProsody(clients, plan, options));
  } catch (error) {
    failed(LABEL.prosody, error);
  }
  notes.push(
    `${clients} clients = ${clients / 2} pairs in direct chats, 200-byte messages, ${plan.window} in flight per sender; ` +
      `${plan.measureMs / 1000} s measured after ${plan.warmupMs / 1000} s warm-up. On 3 nodes client i uses node i mod 3, ` +
      "so the two clients of a pair are on different nodes: a send is forwarded to the chat's owner when neither is it, " +
      "and the push crosses nodes through Redis.",
    "Durable acks: embedded = SQLite commit with synchronous=FULL; one Redis = Redis ran the append (AOF everysec, " +
      "the harness' setting); Redis Cluster WAIT 1 = a replica acknowledged it (the default, survives losing a master); " +
      "no WAIT = the master ran it. Prosody relays and stores nothing.",
    "3 nodes not coordinating: three nodes, each on its own Redis, the clients of a pair on one node (no forwarding, " +
      "no cross-node push): what three processes cost on these two cores. The Redis Cluster rows against it show what " +
      "coordination costs.",
    "srv µs/msg = CPU of every server-side process (nodes and redis-servers) per delivered message; node µs/msg = our " +
      "Node processes only. All processes share this 2-core machine with the load generator: 'other CPU' well above 0 " +
      "means other work skewed the row.",
    `Prosody version: ${await prosodyVersion()}; the bench asserts nothing about time.`,
  );
  return {
    name: "cluster",
    title: `many nodes: one-to-one 200-byte messages, ${clients} clients, ${plan.measureMs / 1000} s per row`,
    columns: COLUMNS,
    rows: toRows(rows),
    notes,
  };
}

async function measureOurs(
  system: Exclude<System, "prosody">,
  clients: number,
  plan: LoadPlan,
  options: BenchOptions,
): Promise<Row> {
  const stops: Array<() => Promise<void>> = [];
  /** Tracked for Ctrl-C (teardown.ts) until stopped here, last started first. */
  const keep = (what: string, stop: () => Promise<void>, kill: () => void): void => {
    const untrack = track(what, stop, kill);
    stops.push(async () => {
      untrack();
      await stop();
    });
  };
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.splice(0).reverse()) await stop();
  };
  try {
    const servers: TestServer[] = [];
    const redisPids: number[] = [];
    // Each server is tracked as soon as it runs, so a failure while starting the next stops it too.
    const keepServer = (server: TestServer): void => {
      const pid = server.pid;
      const stop = async (): Promise<void> => {
        const timer = setTimeout(() => killPid(pid), STOP_TIMEOUT_MS);
        await server.cleanup();
        clearTimeout(timer);
      };
      keep("server", stop, () => killPid(pid));
    };
    if (system === "embedded") {
      const server = await startServer();
      keepServer(server);
      servers.push(server);
    } else if (system === "redis") {
      const redis = await startRedis();
      keep(
        "redis-server",
        () => redis.stop(),
        () => killPid(redis.pid),
      );
      if (redis.pid !== undefined) redisPids.push(redis.pid);
      const server = await startServer({ redisUrl: redis.url });
      keepServer(server);
      servers.push(server);
    } else if (system === "independent") {
      for (let i = 0; i < 3; i += 1) {
        const redis = await startRedis();
        keep(
          "redis-server",
          () => redis.stop(),
          () => killPid(redis.pid),
        );
        if (redis.pid !== undefined) redisPids.push(redis.pid);
        const server = await startServer({ redisUrl: redis.url, extraArgs: ["--node-id", `alone-${i}`] });
        keepServer(server);
        servers.push(server);
      }
    } else {
      const cluster = await startRedisCluster();
      const pids = cluster.nodes.map((node) => node.pid);
      keep(
        "redis cluster",
        () => cluster.stop(),
        () => {
          for (const pid of pids) killPid(pid);
        },
      );
      for (const pid of pids) if (pid !== undefined) redisPids.push(pid);
      const durability = system === "cluster-wait" ? "replica" : "master";
      for (let i = 0; i < 3; i += 1) {
        const server = await startServer({
          redisCluster: cluster.seeds,
          extraArgs: ["--node-id", `bench-${i}`, "--durability", durability],
        });
        keepServer(server);
        servers.push(server);
      }
    }
    const nodePids = servers.map((server) => server.pid);
    if (system === "cluster-wait" || system === "cluster-master") await placementSettled(servers, options.signal);
    const pairs =
      system === "independent"
        ? await pairsWithinNodes(servers, clients, options.signal)
        : await connectFramePairs(
            servers.map((server) => server.url),
            clients,
            options.signal,
          );
    try {
      const run = new LoadRun(plan);
      pairs.attach(run);
      const { outcome, ...cpu } = await executeWithCpu(run, [...nodePids, ...redisPids], options.signal, nodePids);
      const errors = servers.flatMap((server) => server.logs.filter((line) => /"level":(50|60)/.test(line)));
      if (errors.length > 0) options.log(`cluster: servers logged ${errors.length} errors, e.g. ${errors[0] ?? ""}`);
      return { system, outcome, cpu, nodeCpuCores: cpu.partCpuCores, unexpected: pairs.unexpected + errors.length };
    } finally {
      await pairs.close();
    }
  } finally {
    await stopAll();
  }
}

/** Pairs of clients on each node (as evenly as pairs allow), carrying one load together. */
async function pairsWithinNodes(servers: readonly TestServer[], clients: number, signal: AbortSignal) {
  const groups: FramePairs[] = [];
  try {
    const pairCount = clients / 2;
    for (const [i, server] of servers.entries()) {
      const pairsHere = Math.floor(pairCount / servers.length) + (i < pairCount % servers.length ? 1 : 0);
      if (pairsHere > 0) groups.push(await connectFramePairs(server.url, 2 * pairsHere, signal));
    }
  } catch (error) {
    await Promise.all(groups.map((group) => group.close()));
    throw error;
  }
  return {
    get unexpected() {
      return groups.reduce((sum, group) => sum + group.unexpected, 0);
    },
    attach: (run: LoadRun) => {
      for (const group of groups) group.attach(run);
    },
    close: async () => {
      await Promise.all(groups.map((group) => group.close()));
    },
  };
}

/** Waits (bounded) until every shard is held and each node holds some, as the nodes' /metrics say. */
async function placementSettled(servers: readonly TestServer[], signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + PLACEMENT_TIMEOUT_MS;
  for (;;) {
    signal.throwIfAborted();
    const owned = await Promise.all(
      servers.map(async (server) => {
        const text = await (await fetch(`${server.url}/metrics`, { signal })).text();
        return Number(/^remessenger_shards_owned\{[^}]*\} (\d+)/m.exec(text)?.[1] ?? "0");
      }),
    );
    if (owned.every((count) => count > 0) && owned.reduce((a, b) => a + b, 0) === SHARD_COUNT) return;
    if (Date.now() > deadline) throw new Error(`shard placement did not settle: ${owned.join(", ")} shards held`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function measureProsody(clients: number, plan: LoadPlan, options: BenchOptions): Promise<Row> {
  await ensureProsodyInstalled(options.log);
  const home = await createProsodyHome();
  try {
    const usernames = Array.from({ length: clients }, (_, i) => `cluster${i}`);
    await registerProsodyUsers(home, usernames, PROSODY_PASSWORD);
    const prosody = await startProsody(home);
    try {
      const pairs = await connectXmppPairs(prosody, usernames, PROSODY_PASSWORD, options.signal);
      try {
        const run = new LoadRun(plan);
        pairs.attach(run);
        const { outcome, ...cpu } = await executeWithCpu(run, [prosody.pid], options.signal);
        return { system: "prosody", outcome, cpu, nodeCpuCores: cpu.serverCpuCores, unexpected: pairs.unexpected };
      } finally {
        await pairs.close();
      }
    } finally {
      await prosody.stop();
    }
  } finally {
    home.remove();
  }
}

const COLUMNS = [
  { key: "system", label: "system" },
  { key: "nodes", label: "nodes" },
  { key: "messagesPerSecond", label: "msgs/s" },
  { key: "p50Ms", label: "p50 ms", digits: 1 },
  { key: "p99Ms", label: "p99 ms", digits: 1 },
  { key: "serverCpuCores", label: "srv CPU", digits: 2 },
  { key: "serverMicrosPerMessage", label: "srv µs/msg" },
  { key: "nodeMicrosPerMessage", label: "node µs/msg" },
  { key: "loadCpuCores", label: "load CPU", digits: 2 },
  { key: "otherCpuCores", label: "other CPU", digits: 2 },
  { key: "problems", label: "errors" },
  { key: "throughputVsProsody", label: "msgs/s ÷ Prosody", digits: 2 },
  { key: "p99VsProsody", label: "p99 ÷ Prosody", digits: 2 },
  { key: "nodeCpuVsProsody", label: "node µs ÷ Prosody µs", digits: 2 },
];

function perMessage(cores: number, outcome: LoadOutcome): number | null {
  return outcome.messagesPerSecond > 0 ? (cores / outcome.messagesPerSecond) * 1e6 : null;
}

function toRows(rows: Row[]): Array<Record<string, Cell>> {
  const prosody = rows.find((row) => row.system === "prosody");
  const prosodyMicros = prosody === undefined ? null : perMessage(prosody.cpu.serverCpuCores, prosody.outcome);
  return rows.map((row) => {
    const { outcome } = row;
    const nodeMicros = perMessage(row.nodeCpuCores, outcome);
    const isBaseline = row.system === "prosody" || prosody === undefined;
    return {
      systemId: row.system,
      system: LABEL[row.system],
      nodes: NODES[row.system],
      messagesPerSecond: outcome.messagesPerSecond,
      delivered: outcome.delivered,
      p50Ms: outcome.p50Ms,
      p99Ms: outcome.p99Ms,
      serverCpuCores: row.cpu.serverCpuCores,
      serverMicrosPerMessage: perMessage(row.cpu.serverCpuCores, outcome),
      nodeMicrosPerMessage: nodeMicros,
      loadCpuCores: row.cpu.loadCpuCores,
      otherCpuCores: row.cpu.otherCpuCores,
      problems: outcome.failed + outcome.duplicates + outcome.undelivered + row.unexpected,
      throughputVsProsody: isBaseline ? null : outcome.messagesPerSecond / prosody.outcome.messagesPerSecond,
      p99VsProsody:
        isBaseline || outcome.p99Ms === null || prosody.outcome.p99Ms === null || prosody.outcome.p99Ms === 0
          ? null
          : outcome.p99Ms / prosody.outcome.p99Ms,
      nodeCpuVsProsody:
        isBaseline || nodeMicros === null || prosodyMicros === null || prosodyMicros === 0
          ? null
          : nodeMicros / prosodyMicros,
    };
  });
}
