/**
 * Test harness: a private Redis Cluster of 3 masters and 3 replicas, six
 * `redis-server` processes on free loopback ports in one temporary directory.
 *
 * startRedisCluster() starts them, joins them with `redis-cli --cluster create`,
 * and waits until every node reports `cluster_state:ok` and every replica's link
 * to its master is up. The cluster fails over fast (node timeout 2 s by
 * default) and keeps serving the slots it still covers while a master is down
 * (`cluster-require-full-coverage no`), as a production cluster should be set
 * up. stop() kills all six and removes the directory.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { freeLoopbackPort } from "./free-port.ts";

const run = promisify(execFile);
const LOOPBACK = "127.0.0.1";
const MASTERS = 3;
const REPLICAS_PER_MASTER = 1;
const DEFAULT_NODE_TIMEOUT_MS = 2_000;
const DEFAULT_TIMEOUT_MS = 30_000;
const POLL_MS = 50;

export interface ClusterNode {
  port: number;
  /** The redis-server process; undefined once killed. */
  readonly pid: number | undefined;
  readonly isRunning: boolean;
}

export interface RunningRedisCluster {
  /** "127.0.0.1:PORT,127.0.0.1:PORT,..." — every node, for --redis-cluster. */
  seeds: string;
  nodes: ClusterNode[];
  dir: string;
  /** The node serving `key`'s slot as master right now. */
  masterOf(key: string): Promise<ClusterNode>;
  /** SIGKILL one node (a crash: no shutdown, no save). */
  kill(node: ClusterNode): Promise<void>;
  /** Resolves when the slot of `key` is served by a master other than `dead`, and the cluster is ok. */
  waitForFailover(key: string, dead: ClusterNode, timeoutMs?: number): Promise<ClusterNode>;
  stop(): Promise<void>;
}

export interface StartRedisClusterOptions {
  /** Path of the redis-server binary. Default: `redis-server` on PATH. */
  binary?: string;
  /** cluster-node-timeout: how long a silent master takes to be failed over. Default 2,000 ms. */
  nodeTimeoutMs?: number;
  /** Give up when the cluster is not ok after this long. Default 30 s. */
  timeoutMs?: number;
}

interface NodeProcess {
  port: number;
  child: ChildProcess | undefined;
}

export async function startRedisCluster(options: StartRedisClusterOptions = {}): Promise<RunningRedisCluster> {
  const binary = options.binary ?? "redis-server";
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const nodeTimeoutMs = options.nodeTimeoutMs ?? DEFAULT_NODE_TIMEOUT_MS;
  const dir = await mkdtemp(join(tmpdir(), "remessenger-redis-cluster-"));
  const processes: NodeProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(processes.map((node) => killProcess(node)));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const count = MASTERS * (1 + REPLICAS_PER_MASTER);
    const ports = new Set<number>();
    // Each node needs its client port and a cluster bus port; all distinct.
    while (ports.size < count * 2) ports.add(await freeLoopbackPort());
    const list = [...ports];
    for (let i = 0; i < count; i += 1) {
      const port = list[i * 2] ?? 0;
      const busPort = list[i * 2 + 1] ?? 0;
      const child = spawnNode(binary, dir, port, busPort, nodeTimeoutMs);
      processes.push({ port, child });
    }
    await Promise.all(processes.map((node) => waitForPing(node.port, timeoutMs)));
    await run("redis-cli", [
      "--cluster",
      "create",
      ...processes.map((node) => `${LOOPBACK}:${node.port}`),
      "--cluster-replicas",
      String(REPLICAS_PER_MASTER),
      "--cluster-yes",
    ]);
    await waitUntil(timeoutMs, "the cluster to be ok", () => clusterIsHealthy(processes));
  } catch (error) {
    await stop();
    throw error;
  }

  const nodes: ClusterNode[] = processes.map((node) => ({
    port: node.port,
    get pid() {
      return node.child?.pid;
    },
    get isRunning() {
      return node.child !== undefined && node.child.exitCode === null && node.child.signalCode === null;
    },
  }));
  const byPort = (port: number): ClusterNode => {
    const node = nodes.find((n) => n.port === port);
    if (node === undefined) throw new Error(`no cluster node on port ${port}`);
    return node;
  };
  const masterOf = async (key: string): Promise<ClusterNode> => {
    const port = await masterPortOf(
      key,
      processes.filter((p) => p.child !== undefined).map((p) => p.port),
    );
    return byPort(port);
  };

  return {
    seeds: processes.map((node) => `${LOOPBACK}:${node.port}`).join(","),
    nodes,
    dir,
    masterOf,
    kill: async (node) => {
      const process = processes.find((p) => p.port === node.port);
      if (process !== undefined) await killProcess(process);
    },
    waitForFailover: async (key, dead, waitMs = timeoutMs) => {
      let master: ClusterNode | undefined;
      await waitUntil(waitMs, `a replica to take over ${key}'s slot`, async () => {
        const alive = processes.filter((p) => p.child !== undefined);
        const port = await masterPortOf(
          key,
          alive.map((p) => p.port),
        ).catch(() => undefined);
        if (port === undefined || port === dead.port) return false;
        master = byPort(port);
        return clusterIsHealthy(alive, false);
      });
      if (master === undefined) throw new Error("no master after failover");
      return master;
    },
    stop,
  };
}

function spawnNode(binary: string, dir: string, port: number, busPort: number, nodeTimeoutMs: number): ChildProcess {
  const child = spawn(
    binary,
    [
      "--port",
      String(port),
      "--cluster-port",
      String(busPort),
      "--bind",
      LOOPBACK,
      "--dir",
      dir,
      "--dbfilename",
      `dump-${port}.rdb`,
      "--appendfilename",
      `appendonly-${port}.aof`,
      "--appenddirname",
      `aof-${port}`,
      "--cluster-enabled",
      "yes",
      "--cluster-config-file",
      `nodes-${port}.conf`,
      "--cluster-node-timeout",
      String(nodeTimeoutMs),
      "--cluster-require-full-coverage",
      "no",
      "--cluster-replica-validity-factor",
      "0",
      "--save",
      "",
      "--appendonly",
      "yes",
      "--appendfsync",
      "everysec",
      "--daemonize",
      "no",
    ],
    { stdio: ["ignore", "ignore", "ignore"] },
  );
  // A test process that dies without stop() must not leave servers behind.
  const killOnExit = (): void => {
    child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);
  child.once("exit", () => {
    process.off("exit", killOnExit);
  });
  return child;
}

async function killProcess(node: NodeProcess): Promise<void> {
  const child = node.child;
  node.child = undefined;
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGKILL");
  await exited;
}

async function withClient<T>(port: number, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({
    host: LOOPBACK,
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1_000,
  });
  client.on("error", () => {
    // reported by the command that fails
  });
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}

async function waitForPing(port: number, timeoutMs: number): Promise<void> {
  await waitUntil(timeoutMs, `redis on port ${port}`, () =>
    withClient(port, async (client) => (await client.ping()) === "PONG").catch(() => false),
  );
}

/** Every running node says cluster_state:ok, and (when asked) every replica's master link is up. */
async function clusterIsHealthy(processes: readonly NodeProcess[], checkReplicas = true): Promise<boolean> {
  const alive = processes.filter((p) => p.child !== undefined);
  try {
    const checks = await Promise.all(
      alive.map((node) =>
        withClient(node.port, async (client) => {
          const info = await client.cluster("INFO");
          if (!info.includes("cluster_state:ok")) return false;
          if (!checkReplicas) return true;
          const replication = await client.info("replication");
          return !replication.includes("role:slave") || replication.includes("master_link_status:up");
        }),
      ),
    );
    return checks.every(Boolean);
  } catch {
    return false;
  }
}

async function masterPortOf(key: string, ports: readonly number[]): Promise<number> {
  for (const port of ports) {
    try {
      return await withClient(port, async (client) => {
        const slot = await client.cluster("KEYSLOT", key);
        for (const [from, to, master] of await client.cluster("SLOTS")) {
          if (master !== undefined && slot >= from && slot <= to) return master[1];
        }
        throw new Error(`slot ${slot} is not served`);
      });
    } catch {
      // try the next node
    }
  }
  throw new Error(`no node could say who serves ${key}`);
}

async function waitUntil(timeoutMs: number, what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
