/**
 * Composition root: parse the config, open the store, build the core, start
 * the listeners, and shut all of it down gracefully on SIGTERM/SIGINT
 * (stop accepting, answer what is in flight, close the store).
 */
import { mkdirSync } from "node:fs";
import { format } from "node:util";
import { setLogger } from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "pino";
import { systemClock } from "./core/clock.ts";
import { Messenger } from "./core/messenger.ts";
import { LocalPushBus } from "./core/push-bus.ts";
import { GrpcEdge } from "./edge/grpc-edge.ts";
import { HttpListener } from "./edge/http-listener.ts";
import { HttpsPipeEdge } from "./edge/https-pipe-edge.ts";
import { WebSocketEdge } from "./edge/websocket-edge.ts";
import { startTunnel, type RunningTunnel } from "./edge/tunnel-start.ts";
import { ConfigError, USAGE, parseConfig, type ServerConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { ClusterNode } from "./cluster-node.ts";
import { GrpcWebEdge } from "./edge/grpc-web-edge.ts";
import { OperationsEndpoints } from "./edge/metrics.ts";
import type { RedisTarget } from "./store/redis-connection.ts";
import type { RedisStore } from "./store/redis-store.ts";
import type { Store } from "./store/store.ts";
import { DataDirInUseError, DataDirLock } from "./store/data-dir-lock.ts";
import { ListenError, listenOrExplain } from "./listen-error.ts";

const ACTOR_IDLE_MS = 60_000;
const SHUTDOWN_DEADLINE_MS = 60_000;

export interface RunningServer {
  url: string;
  grpcPort: number | null;
  stop(): Promise<void>;
}

function random(n: number): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

interface OpenedStore {
  store: Store;
  /** Set when the store is Redis: other nodes may share it. */
  redis: { store: RedisStore; target: RedisTarget } | null;
  /** The embedded store's directory lock, released after the store closed. */
  lock: DataDirLock | null;
}

async function openStore(config: ServerConfig, log: Logger): Promise<OpenedStore> {
  const { nodes } = config;
  if (config.redisUrl !== null || nodes.redisCluster !== null) {
    const target: RedisTarget =
      nodes.redisCluster !== null ? { clusterNodes: nodes.redisCluster } : { url: config.redisUrl ?? "" };
    const where =
      "url" in target
        ? target.url.replace(/\/\/[^@]*@/, "//***@")
        : nodes.redisCluster?.map((n) => `${n.host}:${n.port}`);
    log.info({ store: "redis", where, durability: nodes.durability }, "opening store");
    // Loaded only when chosen, so the embedded default starts without ioredis.
    const { RedisStore } = await import("./store/redis-store.ts");
    const store = await RedisStore.open({
      ...target,
      waitReplicas: nodes.durability === "master" ? 0 : 1,
      isReplicaRequired: nodes.durability === "replica-strict",
      onConnectionError: (error) => {
        log.warn({ err: error, store: "redis" }, "redis connection error; retrying");
      },
    });
    return { store, redis: { store, target }, lock: null };
  }
  mkdirSync(config.dataDir, { recursive: true });
  // Before the store opens: a second server on the same directory is refused, not interleaved.
  const lock = DataDirLock.acquire(config.dataDir);
  log.info({ store: "sqlite", dataDir: config.dataDir }, "opening store");
  try {
    const { SqliteStore } = await import("./store/sqlite-store.ts");
    return { store: await SqliteStore.open({ dataDir: config.dataDir }), redis: null, lock };
  } catch (error) {
    lock.release();
    throw error;
  }
}

export async function startServer(config: ServerConfig, baseLog: Logger): Promise<RunningServer> {
  const nodeId = config.nodes.nodeId ?? `${hostname()}:${config.listen.port === 0 ? process.pid : config.listen.port}`;
  const log = baseLog.child({ nodeId });
  // grpc-js writes its own failures to stderr ("E No address added ..."); each of them also
  // reaches us as a rejection we report, so its lines go to the structured log at debug.
  setLogger({
    error: (...args: unknown[]) => log.debug({ source: "grpc-js" }, format(...args)),
    info: (...args: unknown[]) => log.debug({ source: "grpc-js" }, format(...args)),
    debug: (...args: unknown[]) => log.debug({ source: "grpc-js" }, format(...args)),
  });
  const { store, redis, lock } = await openStore(config, log);
  const secret = await store.loadOrCreateServerSecret(random(32));
  const cluster =
    redis === null
      ? null
      : await ClusterNode.prepare({ nodeId, config: config.nodes, ...redis, secret, clock: systemClock, log });
  const messenger = new Messenger({
    store,
    bus: cluster?.bus ?? new LocalPushBus(),
    clock: systemClock,
    random,
    secret,
    log,
    ...(cluster ? { router: cluster.router } : {}),
  });
  let isReady = false;

  const http = new HttpListener({ ...config.listen, ...(config.tls ? { tls: config.tls } : {}), log });
  const tunnel: RunningTunnel | null =
    config.tunnel === null ? null : await startTunnel({ config: config.tunnel, secret, messenger, http, log });
  const ws = new WebSocketEdge({ messenger, clock: systemClock, log, ...(tunnel ? { tunnel: tunnel.hello } : {}) });
  http.onUpgrade((request, socket, head) => ws.handleUpgrade(request, socket, head));
  const pipes = new HttpsPipeEdge({ messenger, clock: systemClock, log });
  http.onRequest((request, response) => pipes.handle(request, response));
  const operations = new OperationsEndpoints(
    {
      actors: () => messenger.actors.size,
      mailboxDepth: () => messenger.actors.queuedSends,
      delivery: () => messenger.deliveryStats,
      connections: () => ({ ws: ws.connectionCount, grpc: grpc?.streamCount ?? 0, grpcWeb: grpcWeb.streamCount }),
      ...(cluster ? { cluster: () => cluster.stats } : {}),
      isReady: () => isReady,
    },
    { nodeId },
  );
  http.onRequest((request, response) => operations.handle(request, response));
  const grpcWeb = new GrpcWebEdge({ messenger, log });
  http.onRequest((request, response) => grpcWeb.handle(request, response));
  const { url } = await listenOrExplain(() => http.listen(), hostPort(config.listen), "--listen");

  let grpc: GrpcEdge | null = null;
  let grpcPort: number | null = null;
  if (config.grpcListen !== null) {
    const edge = new GrpcEdge({ messenger, log, ...(config.tls ? { tls: config.tls } : {}) });
    grpc = edge;
    const address = hostPort(config.grpcListen);
    grpcPort = await listenOrExplain(() => edge.listen(address), address, "--grpc-listen (or --grpc-listen off)");
  }
  await cluster?.start(messenger);
  const evictor = setInterval(() => messenger.actors.evictIdle(ACTOR_IDLE_MS), ACTOR_IDLE_MS);
  evictor.unref();
  isReady = true;
  log.info({ url, websocket: `${url.replace(/^http/, "ws")}/v1/ws`, grpcPort, tunnel: tunnel?.info }, "listening");

  return {
    url,
    grpcPort,
    stop: async () => {
      isReady = false;
      clearInterval(evictor);
      ws.close();
      await tunnel?.close();
      pipes.close();
      await Promise.all([http.close(), grpc?.close()]);
      // Hands this node's shards to the others (their chats drained first).
      await cluster?.stop();
      await messenger.drain();
      await store.close();
      lock?.release();
      log.info("stopped");
    },
  };
}

/** The `npm start` process: server/bin/remessenger-server.js calls it once Node is new enough. */
export async function main(): Promise<void> {
  let config;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`remessenger server: ${error.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (config === "help") {
    process.stdout.write(USAGE);
    return;
  }
  const log = createLogger(config.logLevel);
  let server: RunningServer;
  try {
    server = await startServer(config, log);
  } catch (error) {
    // What the operator can fix is one line on stderr; a bug keeps its stack in the log.
    if (error instanceof ListenError || error instanceof DataDirInUseError) {
      process.stderr.write(`remessenger server: ${error.message}\n`);
    } else {
      log.fatal({ err: error }, "could not start");
    }
    process.exit(1);
  }
  let isStopping = false;
  const shutdown = (signal: string): void => {
    if (isStopping) return;
    isStopping = true;
    log.info({ signal }, "shutting down");
    // Whatever hangs (a store that cannot be reached), the process ends.
    setTimeout(() => {
      log.error({ deadlineMs: SHUTDOWN_DEADLINE_MS }, "shutdown took too long; exiting");
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS).unref();
    server.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, "unclean shutdown");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => {
    shutdown("SIGTERM");
  });
  process.on("SIGINT", () => {
    shutdown("SIGINT");
  });
}

/** HOST:PORT as a listen address (IPv6 hosts in brackets). */
function hostPort({ host, port }: { host: string; port: number }): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

if (import.meta.main) await main();
