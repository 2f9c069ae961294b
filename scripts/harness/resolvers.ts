/**
 * Test harness: real recursive resolvers from Debian (Unbound, Knot
 * Resolver, dnsdist) on free loopback ports with private configs in temp
 * dirs, the tunnel zone stubbed to our gateway, and DoH listeners with a
 * throw-away certificate. `ensureResolverPackages()` installs the packages
 * with apt-get when they are missing (once; quick when present).
 *
 * Processes are started in the foreground (no daemon), killed by pid and
 * checked to be the only listener on their port (Unbound's so-reuseport
 * would let a stray instance steal half the queries: we turn it off).
 * `stop()` waits for the exit and removes the temp dir.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import dgram from "node:dgram";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freeLoopbackPort } from "./free-port.ts";

const READY_TIMEOUT_MS = 20_000;
const PACKAGES: Record<string, string> = {
  "/usr/sbin/unbound": "unbound",
  "/usr/sbin/kresd": "knot-resolver",
  "/usr/bin/dnsdist": "dnsdist",
  "/usr/bin/dns2tcpd": "dns2tcp",
  "/usr/sbin/nft": "nftables",
  "/usr/bin/openssl": "openssl",
};

/** Installs the resolver packages that are missing (Debian, as root). Throws with apt's output on failure. */
export function ensureResolverPackages(): void {
  const missing = Object.entries(PACKAGES)
    .filter(([binary]) => !existsSync(binary))
    .map(([, name]) => name);
  if (missing.length === 0) return;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  try {
    execFileSync("apt-get", ["update", "-qq"], { env, stdio: "pipe", timeout: 300_000 });
    execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], {
      env,
      stdio: "pipe",
      timeout: 600_000,
    });
  } catch (error) {
    const output = (error as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`could not install ${missing.join(", ")} with apt-get: ${output || String(error)}`, {
      cause: error,
    });
  }
}

export interface Address {
  host: string;
  port: number;
}

export interface RunningResolver {
  readonly name: string;
  /** Plain DNS (UDP and TCP). */
  readonly dns: Address;
  /** RFC 8484 endpoint (HTTP/2 with TLS), signed by `caFile`. */
  readonly dohUrl: string;
  /** The certificate to trust for `dohUrl` (NODE_EXTRA_CA_CERTS). */
  readonly caFile: string;
  readonly pid: number;
  readonly logs: string[];
  stop(): Promise<void>;
}

/** A self-signed certificate for 127.0.0.1 and localhost, in `dir`. */
export function makeTestCertificate(dir: string, extraIp?: string): { certFile: string; keyFile: string } {
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "2",
      "-subj",
      "/CN=localhost",
      "-addext",
      `subjectAltName=IP:127.0.0.1,DNS:localhost${extraIp === undefined || extraIp === "127.0.0.1" ? "" : `,IP:${extraIp}`}`,
    ],
    { stdio: "pipe" },
  );
  return { certFile, keyFile };
}

export interface ResolverOptions {
  zone: string;
  gateway: Address;
}

export interface UnboundOptions extends ResolverOptions {
  /** use-caps-for-id: 0x20 case randomisation of every upstream query. */
  capsForId?: boolean;
  /** QNAME minimisation (Unbound's default: on). */
  qnameMinimisation?: boolean;
  /** Run inside this network namespace (made by the caller), listening on `listenHost`. */
  netns?: string;
  listenHost?: string;
  /** More plain-DNS listeners ("127.0.0.1@53" inside a namespace, for clients stuck on port 53). */
  extraInterfaces?: string[];
  /** More zones stubbed to other servers (a peer tunnel in a benchmark). */
  extraStubs?: { zone: string; address: Address }[];
  /** More client networks allowed to ask (CIDR), beyond loopback and the listen host's /24. */
  accessControl?: string[];
  /** Check readiness from inside `netns` (when this process cannot reach the namespace's network). */
  isProbedInside?: boolean;
}

export async function startUnbound(options: UnboundOptions): Promise<RunningResolver> {
  const dir = mkdtempSync(join(tmpdir(), "remessenger-unbound-"));
  const { certFile, keyFile } = makeTestCertificate(dir, options.listenHost);
  const dnsPort = await freeLoopbackPort();
  const dohPort = await freeLoopbackPort();
  const host = options.listenHost ?? "127.0.0.1";
  const config = `server:
  username: ""
  chroot: ""
  directory: "${dir}"
  pidfile: "${dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  do-daemonize: no
  interface: ${host}@${dnsPort}
  interface: ${host}@${dohPort}
  https-port: ${dohPort}
  http-endpoint: "/dns-query"
  tls-service-key: "${keyFile}"
  tls-service-pem: "${certFile}"
  so-reuseport: no
  access-control: 127.0.0.0/8 allow
  access-control: ${host}/24 allow
${(options.accessControl ?? []).map((net) => `  access-control: ${net} allow\n`).join("")}  do-not-query-localhost: no
  module-config: "iterator"
  num-threads: 1
  qname-minimisation: ${options.qnameMinimisation === false ? "no" : "yes"}
  use-caps-for-id: ${options.capsForId === true ? "yes" : "no"}
${(options.extraInterfaces ?? []).map((address) => `  interface: ${address}\n`).join("")}stub-zone:
  name: "${options.zone}"
  stub-addr: ${options.gateway.host}@${options.gateway.port}
${(options.extraStubs ?? []).map((stub) => `stub-zone:\n  name: "${stub.zone}"\n  stub-addr: ${stub.address.host}@${stub.address.port}\n`).join("")}`;
  const file = join(dir, "unbound.conf");
  writeFileSync(file, config);
  const command = ["/usr/sbin/unbound", "-d", "-c", file];
  // `ip netns exec` execs the command: the pid is Unbound's.
  const argv = options.netns === undefined ? command : ["/usr/sbin/ip", "netns", "exec", options.netns, ...command];
  const child = spawn(argv[0] ?? "", argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  return started(
    `unbound${options.capsForId === true ? " (use-caps-for-id)" : ""}`,
    child,
    dir,
    options,
    { dns: { host, port: dnsPort }, dohUrl: `https://${host}:${dohPort}/dns-query`, caFile: certFile },
    options.isProbedInside === true ? options.netns : undefined,
  );
}

export async function startKnotResolver(options: ResolverOptions): Promise<RunningResolver> {
  const dir = mkdtempSync(join(tmpdir(), "remessenger-kresd-"));
  const { certFile, keyFile } = makeTestCertificate(dir);
  const dnsPort = await freeLoopbackPort();
  const dohPort = await freeLoopbackPort();
  const config = `
net.listen('127.0.0.1', ${dnsPort}, { kind = 'dns' })
net.listen('127.0.0.1', ${dohPort}, { kind = 'doh2' })
net.tls('${certFile}', '${keyFile}')
modules = { 'policy' }
cache.size = 20 * MB
policy.add(policy.suffix(policy.STUB({ '${options.gateway.host}@${options.gateway.port}' }), { todname('${options.zone}.') }))
`;
  const file = join(dir, "kresd.conf");
  writeFileSync(file, config);
  const child = spawn("/usr/sbin/kresd", ["-n", "-c", file, dir], { stdio: ["ignore", "pipe", "pipe"] });
  return started("knot-resolver", child, dir, options, {
    dns: { host: "127.0.0.1", port: dnsPort },
    dohUrl: `https://127.0.0.1:${dohPort}/dns-query`,
    caFile: certFile,
  });
}

export async function startDnsdist(options: ResolverOptions): Promise<RunningResolver> {
  const dir = mkdtempSync(join(tmpdir(), "remessenger-dnsdist-"));
  const { certFile, keyFile } = makeTestCertificate(dir);
  const dnsPort = await freeLoopbackPort();
  const dohPort = await freeLoopbackPort();
  const config = `
setLocal('127.0.0.1:${dnsPort}')
addDOHLocal('127.0.0.1:${dohPort}', '${certFile}', '${keyFile}', '/dns-query', { customResponseHeaders = { ['access-control-allow-origin'] = '*' } })
newServer({ address = '${options.gateway.host}:${options.gateway.port}', checkName = '${options.zone}.', checkType = 'SOA' })
setSecurityPollSuffix('')
`;
  const file = join(dir, "dnsdist.conf");
  writeFileSync(file, config);
  const child = spawn("/usr/bin/dnsdist", ["--supervised", "--disable-syslog", "-C", file], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  return started("dnsdist", child, dir, options, {
    dns: { host: "127.0.0.1", port: dnsPort },
    dohUrl: `https://127.0.0.1:${dohPort}/dns-query`,
    caFile: certFile,
  });
}

async function started(
  name: string,
  child: ChildProcess,
  dir: string,
  options: ResolverOptions,
  endpoints: { dns: Address; dohUrl: string; caFile: string },
  probeNetns?: string,
): Promise<RunningResolver> {
  const logs: string[] = [];
  child.stdout?.on("data", (chunk: Buffer) => logs.push(chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => logs.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    if (probeNetns === undefined) await waitForAnswer(endpoints.dns, options.zone, child, logs);
    else await waitForAnswerInside(probeNetns, endpoints.dns, options.zone);
  } catch (error) {
    await stop();
    throw new Error(`${name} did not start: ${(error as Error).message}\n${logs.join("").slice(-2000)}`, {
      cause: error,
    });
  }
  if (child.pid === undefined) throw new Error(`${name} has no pid`);
  return { name, ...endpoints, pid: child.pid, logs, stop };
}

/** Sends SOA queries for the zone until one is answered (the resolver and its path to the gateway work). */
async function waitForAnswer(address: Address, zone: string, child: ChildProcess, logs: string[]): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const query = soaQuery(zone);
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`exited with ${child.exitCode ?? child.signalCode}: ${logs.join("").slice(-500)}`);
    }
    if (await answersOnce(address, query, 300)) return;
  }
  throw new Error(`no answer on ${address.host}:${address.port} within ${READY_TIMEOUT_MS} ms`);
}

/** waitForAnswer run by a child process inside a network namespace (scripts/harness/dns-probe.ts). */
function waitForAnswerInside(netns: string, address: Address, zone: string): Promise<void> {
  const probe = new URL("./dns-probe.ts", import.meta.url).pathname;
  return new Promise((resolve, reject) => {
    execFile(
      "/usr/sbin/ip",
      [
        "netns",
        "exec",
        netns,
        process.execPath,
        probe,
        address.host,
        String(address.port),
        zone,
        String(READY_TIMEOUT_MS),
      ],
      { timeout: READY_TIMEOUT_MS + 5_000 },
      (error, _stdout, stderr) => {
        if (error === null) resolve();
        else
          reject(
            new Error(`no answer on ${address.host}:${address.port} from inside ${netns}: ${stderr || error.message}`),
          );
      },
    );
  });
}

/** Polls until the resolver answers an SOA query for `zone` (false after `timeoutMs`). */
export async function answersWithin(address: Address, zone: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const query = soaQuery(zone);
  while (Date.now() < deadline) {
    if (await answersOnce(address, query, 300)) return true;
  }
  return false;
}

function answersOnce(address: Address, query: Uint8Array, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket("udp4");
    const timer = setTimeout(() => {
      socket.close();
      resolve(false);
    }, timeoutMs);
    socket.on("message", (message) => {
      clearTimeout(timer);
      socket.close();
      // NOERROR (rcode 0) with at least one answer.
      resolve(message.length >= 12 && ((message[3] ?? 0) & 0x0f) === 0 && message.readUInt16BE(6) > 0);
    });
    socket.on("error", () => {
      clearTimeout(timer);
      socket.close();
      resolve(false);
    });
    socket.send(query, address.port, address.host);
  });
}

function soaQuery(zone: string): Uint8Array {
  const labels = zone.split(".").flatMap((label) => [label.length, ...Buffer.from(label)]);
  return new Uint8Array([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 6, 0, 1]);
}
