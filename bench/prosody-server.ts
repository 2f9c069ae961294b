/**
 * A private Prosody (Debian's package) for the XMPP baseline: installed with
 * apt-get when missing, configured in a temp dir (c2s on a free loopback port,
 * no s2s, no TLS demanded on loopback, plain-text accounts in the temp dir, log
 * to a file there), users made with `prosodyctl register`, started in the
 * foreground and stopped by the benchmark.
 *
 * Prosody refuses to run as root, so as root it runs as the `prosody` system
 * user (setpriv execs in place, so the pid we hold is Prosody's own).
 *
 * Messages are not stored: offline delivery (mod_offline) is off and the
 * clients use no stream management, so Prosody relays and forgets.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { chownSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { freeLoopbackPort } from "../scripts/harness/free-port.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { killPid, track } from "./teardown.ts";

const execFileAsync = promisify(execFile);

export const PROSODY_DOMAIN = "localhost";
const LOOPBACK = "127.0.0.1";
const SYSTEM_USER = "prosody";
const START_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;
const INSTALL_TIMEOUT_MS = 300_000;
/** prosodyctl runs take ~0.1 s each; a few at once use both cores. */
const REGISTER_CONCURRENCY = 4;

export interface ProsodyHome {
  dir: string;
  configFile: string;
  port: number;
  /** Removes the temp dir (stop the server first). */
  remove(): void;
}

export interface RunningProsody {
  host: string;
  port: number;
  domain: string;
  pid: number;
  stop(): Promise<void>;
}

/** Installs Debian's prosody when its binary is missing (needs root). */
export async function ensureProsodyInstalled(log: (line: string) => void): Promise<void> {
  if (await hasCommand("prosody")) return;
  if (process.getuid?.() !== 0) throw new Error("prosody is not installed; run: sudo apt-get install -y prosody");
  log("installing prosody with apt-get (once)...");
  const install = (): Promise<unknown> =>
    execFileAsync("apt-get", ["install", "-y", "-q", "prosody"], {
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      timeout: INSTALL_TIMEOUT_MS,
    });
  try {
    await install();
  } catch {
    // Usually stale package lists: refresh them once and try again.
    await execFileAsync("apt-get", ["update", "-q"], { timeout: INSTALL_TIMEOUT_MS });
    await install();
  }
}

/** The installed package's version, for the report. */
export async function prosodyVersion(): Promise<string> {
  try {
    const { stdout } = await execFileAsync("dpkg-query", ["-W", "-f=${Version}", "prosody"]);
    return stdout.trim();
  } catch {
    return "unknown (not a Debian package here)";
  }
}

/** A temp dir with the config and an empty data dir, owned by the user Prosody runs as. */
export async function createProsodyHome(): Promise<ProsodyHome> {
  const dir = mkdtempSync(join(tmpdir(), "remessenger-prosody-"));
  const port = await freeLoopbackPort();
  const configFile = join(dir, "prosody.cfg.lua");
  mkdirSync(join(dir, "data"));
  mkdirSync(join(dir, "certs"));
  writeFileSync(configFile, configText(dir, port));
  if (process.getuid?.() === 0) {
    const { uid, gid } = await systemUser(SYSTEM_USER);
    for (const path of [dir, join(dir, "data"), join(dir, "certs"), configFile]) chownSync(path, uid, gid);
  }
  return { dir, configFile, port, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Creates accounts `usernames` with `password` (stored plain, in the temp dir). */
export async function registerProsodyUsers(
  home: ProsodyHome,
  usernames: readonly string[],
  password: string,
): Promise<void> {
  for (let start = 0; start < usernames.length; start += REGISTER_CONCURRENCY) {
    await Promise.all(
      usernames.slice(start, start + REGISTER_CONCURRENCY).map((username) => {
        const [command, args] = asProsodyUser("prosodyctl", [
          "--config",
          home.configFile,
          "register",
          username,
          PROSODY_DOMAIN,
          password,
        ]);
        return execFileAsync(command, args, { timeout: START_TIMEOUT_MS });
      }),
    );
  }
}

/** Starts Prosody on the home's port and waits until c2s accepts connections. */
export async function startProsody(home: ProsodyHome): Promise<RunningProsody> {
  const [command, args] = asProsodyUser("prosody", ["--config", home.configFile, "-F"]);
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], cwd: home.dir });
  let output = "";
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString("utf8")).slice(-4_000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const pid = child.pid;
  if (pid === undefined) throw new Error("could not spawn prosody");
  const stop = (): Promise<void> => stopChild(child);
  const untrack = track("prosody", stop, () => killPid(pid));
  try {
    await waitForPort(home.port, child, START_TIMEOUT_MS);
  } catch (error) {
    await stop();
    untrack();
    const logFile = join(home.dir, "prosody.log");
    const logTail = safeRead(logFile).slice(-2_000);
    throw new Error(`prosody did not start: ${String(error)}\n${output}\n${logTail}`, { cause: error });
  }
  return {
    host: LOOPBACK,
    port: home.port,
    domain: PROSODY_DOMAIN,
    pid,
    stop: async () => {
      untrack();
      await stop();
    },
  };
}

function configText(dir: string, port: number): string {
  const quote = (value: string): string => JSON.stringify(value);
  return `-- Written by bench/prosody-server.ts for one benchmark run.
pidfile = ${quote(join(dir, "prosody.pid"))}
data_path = ${quote(join(dir, "data"))}
certificates = ${quote(join(dir, "certs"))}
plugin_paths = {}
-- The essentials of a chat server; no rate limits (mod_limits), no stream management.
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "posix" }
-- No federation, and no offline storage: messages are relayed, never stored.
modules_disabled = { "s2s"; "offline" }
c2s_ports = { ${port} }
c2s_interfaces = { ${quote(LOOPBACK)} }
c2s_direct_tls_ports = {}
s2s_ports = {}
legacy_ssl_ports = {}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
log = { info = ${quote(join(dir, "prosody.log"))} }
VirtualHost ${quote(PROSODY_DOMAIN)}
`;
}

/** The command that runs `command args` as the Prosody user (root) or as ourselves. */
function asProsodyUser(command: string, args: string[]): [string, string[]] {
  if (process.getuid?.() !== 0) return [command, args];
  return ["setpriv", [`--reuid=${SYSTEM_USER}`, `--regid=${SYSTEM_USER}`, "--init-groups", "--", command, ...args]];
}

async function systemUser(name: string): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([execFileAsync("id", ["-u", name]), execFileAsync("id", ["-g", name])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

async function hasCommand(name: string): Promise<boolean> {
  try {
    await execFileAsync("sh", ["-c", `command -v ${name}`]);
    return true;
  } catch {
    return false;
  }
}

/** Tries to connect until it works, the child exits, or the deadline passes. */
async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const exited = new Promise<never>((_, reject) => {
    child.once("exit", (code, signal) => {
      reject(new Error(`exited with ${code ?? signal}`));
    });
  });
  exited.catch(() => undefined); // observed below through Promise.race
  while (Date.now() < deadline) {
    if (await Promise.race([canConnect(port), exited])) return;
    await Promise.race([new Promise((resolve) => setTimeout(resolve, 50)), exited]);
  }
  throw new Error(`port ${port} not open after ${timeoutMs} ms`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: LOOPBACK, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => {
      resolve(false);
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    return `(no log: ${String(error)})`;
  }
}
