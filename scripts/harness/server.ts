/**
 * Test harness: runs the real server (server/src/main.ts) as a child process,
 * on free loopback ports, and lets a test stop it gently, kill it with SIGKILL
 * and start it again on the same ports and data, as an operator would.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const MAIN = resolve(import.meta.dirname, "../../server/src/main.ts");
const START_TIMEOUT_MS = 20_000;

export interface ServerOptions {
  /**
   * "redis" starts a private redis-server for this server (stopped by cleanup);
   * default "embedded". Ignored when `redisUrl` is given.
   */
  store?: "embedded" | "redis";
  /** Use this Redis instead of the embedded store. */
  redisUrl?: string;
  /** Use this Redis Cluster (seeds "host:port,...", e.g. RunningRedisCluster.seeds) as the store. */
  redisCluster?: string;
  /** Reuse a data directory (default: a fresh temp dir, removed on cleanup). */
  dataDir?: string;
  logLevel?: string;
  extraArgs?: string[];
  /** Main listener address (default 127.0.0.1 on a free port), e.g. inside a lab namespace. */
  listen?: string;
  /** Runs the server through this command prefix, e.g. ["ip", "netns", "exec", NS]. */
  wrapCommand?: readonly string[];
}

export interface TestServer {
  /** Base URL of the main listener, e.g. http://127.0.0.1:41234 */
  readonly url: string;
  readonly grpcAddress: string;
  readonly dataDir: string;
  /** The Redis this server uses, when it is not on the embedded store. */
  readonly redisUrl: string | undefined;
  /** The running server process (a new one after restart()). */
  readonly pid: number;
  /** Everything the server printed (JSON log lines), for assertions and post-mortems. */
  readonly logs: string[];
  /** SIGTERM and wait for exit (graceful shutdown). */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit: a crash. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: the process freezes without closing its sockets. */
  pause(): void;
  resume(): void;
  /** Starts the server again on the same ports and data. */
  restart(): Promise<void>;
  /** stop() if running, then remove the temp data dir. */
  cleanup(): Promise<void>;
}

interface Listening {
  url: string;
  grpcPort: number | null;
  /** The DNS tunnel's UDP/TCP listener, "host:port", when it has one. */
  tunnelDns: string | null;
}

function waitForListening(child: ChildProcess, logs: string[]): Promise<Listening> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`server did not start within ${START_TIMEOUT_MS} ms:\n${logs.slice(-20).join("\n")}`));
    }, START_TIMEOUT_MS);
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${logs.slice(-20).join("\n")}`));
    };
    child.once("exit", onExit);
    const lines = createInterface({ input: child.stdout ?? process.stdin });
    lines.on("line", (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as {
          msg?: string;
          url?: string;
          grpcPort?: number | null;
          tunnel?: { dns?: string | null };
        };
        if (entry.msg === "listening" && entry.url !== undefined) {
          clearTimeout(timer);
          child.off("exit", onExit);
          resolvePromise({ url: entry.url, grpcPort: entry.grpcPort ?? null, tunnelDns: entry.tunnel?.dns ?? null });
        }
      } catch {
        // not JSON: kept in logs as it is
      }
    });
    child.stderr?.on("data", (chunk: Buffer) => logs.push(chunk.toString()));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolvePromise) => child.once("exit", (code) => resolvePromise(code)));
}

/** `--dns-listen HOST:0` becomes the port the first run bound, so a restart keeps the tunnel's address. */
function withBoundDnsListen(args: readonly string[], bound: string | null): string[] {
  const at = args.indexOf("--dns-listen");
  if (at < 0 || bound === null || !(args[at + 1] ?? "").endsWith(":0")) return [...args];
  return args.map((arg, i) => (i === at + 1 ? bound : arg));
}

export async function startServer(options: ServerOptions = {}): Promise<TestServer> {
  let ownRedis: { url: string; stop(): Promise<void> } | undefined;
  if (options.redisUrl === undefined && options.store === "redis") {
    const { startRedis } = await import("./redis.ts");
    ownRedis = await startRedis();
    options = { ...options, redisUrl: ownRedis.url };
  }
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "remessenger-server-"));
  const logs: string[] = [];
  let listenArg = options.listen ?? "127.0.0.1:0";
  let grpcArg = "127.0.0.1:0";
  let extraArgs = options.extraArgs ?? [];
  let child: ChildProcess;

  const launch = async (): Promise<Listening> => {
    const args = [MAIN, "--listen", listenArg, "--grpc-listen", grpcArg, "--data", dataDir];
    if (options.redisUrl !== undefined) args.push("--redis", options.redisUrl);
    if (options.redisCluster !== undefined) args.push("--redis-cluster", options.redisCluster);
    args.push("--log-level", options.logLevel ?? "info", ...extraArgs);
    const [command, ...prefix] = [...(options.wrapCommand ?? []), process.execPath];
    child = spawn(command ?? process.execPath, [...prefix, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env },
    });
    return waitForListening(child, logs);
  };

  let first: Listening;
  try {
    first = await launch();
  } catch (error) {
    await ownRedis?.stop();
    throw error;
  }
  // A restart binds the same ports, so clients find the server where it was.
  const firstUrl = new URL(first.url);
  listenArg = `${firstUrl.hostname}:${firstUrl.port}`;
  grpcArg = grpcArg === "off" ? "off" : `127.0.0.1:${first.grpcPort ?? 0}`;
  extraArgs = withBoundDnsListen(extraArgs, first.tunnelDns);

  const server: TestServer = {
    url: first.url,
    grpcAddress: grpcArg,
    dataDir,
    redisUrl: options.redisUrl,
    logs,
    get pid() {
      if (child.pid === undefined) throw new Error("server process has no pid");
      return child.pid;
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      return exited(child);
    },
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await exited(child);
    },
    pause: () => child.kill("SIGSTOP"),
    resume: () => child.kill("SIGCONT"),
    restart: async () => {
      await launch();
    },
    cleanup: async () => {
      await server.stop();
      await ownRedis?.stop();
      if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return server;
}
