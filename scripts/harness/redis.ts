/**
 * Test harness: a private redis-server for one test file (or one process).
 *
 * startRedis() spawns redis-server on a free loopback port in a temporary
 * directory, waits until it answers PING, and returns its URL and a unique key
 * prefix; stop() kills it and removes the directory. Tests never touch the
 * shared Redis on 6379. When REDIS_URL is set that server is used instead and
 * stop() leaves it running: isolation then rests on the key prefix alone.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freeLoopbackPort } from "./free-port.ts";

export interface RunningRedis {
  /** redis://127.0.0.1:PORT (or REDIS_URL). */
  url: string;
  /** Unique to this call; give each test its own by appending to it. */
  keyPrefix: string;
  /** The redis-server process (undefined when REDIS_URL points elsewhere). */
  pid: number | undefined;
  stop(): Promise<void>;
}

export interface StartRedisOptions {
  /** Path of the redis-server binary. Default: `redis-server` on PATH. */
  binary?: string;
  /** Give up when the server is not answering after this long. Default 10 s. */
  timeoutMs?: number;
}

const LOOPBACK = "127.0.0.1";
const DEFAULT_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
/** Another process may take the free port between our probe and redis' bind. */
const PORT_ATTEMPTS = 5;

export async function startRedis(options: StartRedisOptions = {}): Promise<RunningRedis> {
  const keyPrefix = `test:${process.pid}:${randomBytes(6).toString("hex")}:`;
  const sharedUrl = process.env["REDIS_URL"];
  if (sharedUrl !== undefined && sharedUrl !== "") {
    return { url: sharedUrl, keyPrefix, pid: undefined, stop: () => Promise.resolve() };
  }
  const dir = await mkdtemp(join(tmpdir(), "remessenger-redis-"));
  let lastError: unknown;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt += 1) {
    const port = await freeLoopbackPort();
    try {
      const child = await spawnRedis(
        options.binary ?? "redis-server",
        port,
        dir,
        options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      );
      return { url: `redis://${LOOPBACK}:${port}`, keyPrefix, pid: child.pid, stop: () => stopRedis(child, dir) };
    } catch (error) {
      lastError = error;
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`redis-server did not start after ${PORT_ATTEMPTS} attempts`, { cause: lastError });
}

async function spawnRedis(binary: string, port: number, dir: string, timeoutMs: number): Promise<ChildProcess> {
  const child = spawn(
    binary,
    [
      "--port",
      String(port),
      "--bind",
      LOOPBACK,
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      "yes",
      "--appendfsync",
      "everysec",
      "--daemonize",
      "no",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  // A test process that dies without stop() must not leave servers behind.
  const killOnExit = (): void => {
    child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);
  child.once("exit", () => {
    process.off("exit", killOnExit);
  });
  try {
    await waitForReadyLine(child, timeoutMs);
    await ping(port, timeoutMs);
    return child;
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
}

/** Redis logs this line once it accepts connections; waiting for it avoids polling. */
function waitForReadyLine(child: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => {
      finish(new Error(`redis-server not ready after ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString("utf8");
      if (output.includes("Ready to accept connections")) finish(undefined);
    };
    const onExit = (code: number | null): void => {
      finish(new Error(`redis-server exited (${code ?? "signal"}) before it was ready:\n${output}`));
    };
    const onError = (error: Error): void => {
      finish(error);
    };
    const finish = (error: Error | undefined): void => {
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      child.off("exit", onExit);
      child.off("error", onError);
      // Keep draining so a chatty server never blocks on a full pipe.
      child.stdout?.resume();
      child.stderr?.resume();
      if (error === undefined) resolve();
      else reject(error);
    };
    child.stdout?.on("data", onData);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}

function ping(port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: LOOPBACK, port });
    let reply = "";
    socket.setTimeout(timeoutMs, () => {
      socket.destroy(new Error(`no PING reply on port ${port}`));
    });
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString("utf8");
      if (!reply.includes("\r\n")) return;
      socket.end();
      if (reply.startsWith("+PONG")) resolve();
      else reject(new Error(`unexpected PING reply: ${reply.trim()}`));
    });
    socket.once("error", reject);
  });
}

async function stopRedis(child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => {
      child.once("exit", () => {
        resolve();
      });
    });
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }
  await rm(dir, { recursive: true, force: true });
}
