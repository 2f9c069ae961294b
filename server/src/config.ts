/**
 * Server configuration: parsed once at start from flags and REMESSENGER_* env
 * vars (flags win) into one validated object. Nothing else reads process.env.
 */
import { parseArgs } from "node:util";
import { normalizeZone, ErrorCode, RemessengerError } from "@remessenger/protocol";

export interface HostPort {
  host: string;
  port: number;
}

export interface ServerConfig {
  listen: HostPort;
  /** null turns the gRPC listener off. */
  grpcListen: HostPort | null;
  dataDir: string;
  /** When set, Redis replaces the embedded store. */
  redisUrl: string | null;
  tls: { certFile: string; keyFile: string } | null;
  /** The DNS tunnel gateway; null when no zone is configured. */
  tunnel: TunnelConfig | null;
  /** Many nodes on Redis (--redis or --redis-cluster): leases, forwarding, durability. */
  nodes: NodesConfig;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
}

export interface TunnelConfig {
  /** The zone delegated to this server, canonical (lower case, no trailing dot). */
  zone: string;
  /** UDP and TCP DNS listener; null serves the zone over DoH (/dns-query) only. */
  dnsListen: HostPort | null;
  /** Longest a tunnel poll with nothing to send is held before its empty answer. */
  holdMs: number;
  /** Queries per second per source address (0: no limit). */
  rateLimitPerSecond: number;
}

export interface NodesConfig {
  /** Redis Cluster seed nodes; when set, the store is this cluster (not --redis). */
  redisCluster: HostPort[] | null;
  /** This node's id among the nodes; null: host name and main port. */
  nodeId: string | null;
  /** The node-to-node listener (forwarded sends); port 0 picks a free one. */
  nodeListen: HostPort;
  /** Shard lease TTL: how long a dead node's chats wait before another node takes them. */
  leaseTtlMs: number;
  /**
   * When a send is acked: "replica" waits until a replica has it (a master
   * with none left acks alone), "replica-strict" refuses while none is
   * attached, "master" acks when the master ran it (Redis' appendfsync rules).
   */
  durability: "replica" | "replica-strict" | "master";
}

/** A flag or environment variable the server cannot run with (INVALID_ARGUMENT). */
export class ConfigError extends RemessengerError {
  override readonly name = "ConfigError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message, options);
  }
}

export const USAGE = `Usage: npm start -- [options]

  --listen HOST:PORT       main listener: WebSocket, HTTPS (default 127.0.0.1:8080)   REMESSENGER_LISTEN
  --grpc-listen HOST:PORT  gRPC listener, or "off" (default 127.0.0.1:8081)           REMESSENGER_GRPC_LISTEN
  --data DIR               embedded store directory (default ./data)                REMESSENGER_DATA
  --redis URL              use Redis (redis://HOST:PORT/DB) instead of the embedded  REMESSENGER_REDIS
  --tls-cert FILE          serve HTTPS/WSS (HTTP/2 and HTTP/1.1) with this cert      REMESSENGER_TLS_CERT
  --tls-key FILE           ... and this key                                          REMESSENGER_TLS_KEY
  --dns-zone ZONE          serve the DNS tunnel for this zone (DoH at /dns-query)   REMESSENGER_DNS_ZONE
  --dns-listen HOST:PORT   ... also on UDP and TCP here (53 in production)          REMESSENGER_DNS_LISTEN
  --dns-hold-ms MS         hold idle tunnel polls this long (default 300)           REMESSENGER_DNS_HOLD_MS
  --dns-rate-limit N       tunnel queries/s per source address, 0 = off (5000)      REMESSENGER_DNS_RATE_LIMIT
  --redis-cluster H:P,...  use this Redis Cluster (seed nodes) as the store          REMESSENGER_REDIS_CLUSTER
  --node-id ID             this node's id (default: host name:main port)            REMESSENGER_NODE_ID
  --node-listen HOST:PORT  node-to-node listener (default 127.0.0.1:0)              REMESSENGER_NODE_LISTEN
  --lease-ttl-ms MS        shard lease TTL: failover time of a dead node (5000)     REMESSENGER_LEASE_TTL_MS
  --durability RULE        replica | replica-strict | master: when a send is acked  REMESSENGER_DURABILITY
                           (default replica on a cluster, master on one Redis)
  --log-level LEVEL        fatal|error|warn|info|debug|trace (default info)          REMESSENGER_LOG_LEVEL
  --help                   print this
`;

const LOG_LEVELS = new Set(["fatal", "error", "warn", "info", "debug", "trace"]);

export function parseHostPort(value: string, what: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value.trim());
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (host === undefined || !Number.isInteger(port) || port > 65535) {
    throw new ConfigError(
      `${what} must be HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080), got ${JSON.stringify(value)}`,
    );
  }
  return { host, port };
}

/** Returns the config, or "help"; throws ConfigError with a message for the user. */
export function parseConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ServerConfig | "help" {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        listen: { type: "string" },
        "grpc-listen": { type: "string" },
        data: { type: "string" },
        redis: { type: "string" },
        "redis-cluster": { type: "string" },
        "node-id": { type: "string" },
        "node-listen": { type: "string" },
        "lease-ttl-ms": { type: "string" },
        durability: { type: "string" },
        "tls-cert": { type: "string" },
        "tls-key": { type: "string" },
        "dns-zone": { type: "string" },
        "dns-listen": { type: "string" },
        "dns-hold-ms": { type: "string" },
        "dns-rate-limit": { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  if (values.help === true) return "help";
  const pick = (flag: string | undefined, name: string): string | undefined => {
    const value = flag ?? env[name];
    return value === undefined || value === "" ? undefined : value;
  };

  const listen = parseHostPort(pick(values.listen, "REMESSENGER_LISTEN") ?? "127.0.0.1:8080", "--listen");
  const grpcRaw = pick(values["grpc-listen"], "REMESSENGER_GRPC_LISTEN") ?? "127.0.0.1:8081";
  const grpcListen = grpcRaw === "off" ? null : parseHostPort(grpcRaw, "--grpc-listen");
  const redisUrl = pick(values.redis, "REMESSENGER_REDIS") ?? null;
  if (redisUrl !== null && !/^rediss?:\/\//.test(redisUrl)) {
    throw new ConfigError(`--redis must be a redis:// or rediss:// URL, got ${JSON.stringify(redisUrl)}`);
  }
  const certFile = pick(values["tls-cert"], "REMESSENGER_TLS_CERT");
  const keyFile = pick(values["tls-key"], "REMESSENGER_TLS_KEY");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError("--tls-cert and --tls-key go together: give both or neither");
  }
  const logLevel = pick(values["log-level"], "REMESSENGER_LOG_LEVEL") ?? "info";
  if (!LOG_LEVELS.has(logLevel)) throw new ConfigError(`--log-level must be one of ${[...LOG_LEVELS].join(", ")}`);

  const tunnel = parseTunnel(
    pick(values["dns-zone"], "REMESSENGER_DNS_ZONE"),
    pick(values["dns-listen"], "REMESSENGER_DNS_LISTEN"),
    pick(values["dns-hold-ms"], "REMESSENGER_DNS_HOLD_MS"),
    pick(values["dns-rate-limit"], "REMESSENGER_DNS_RATE_LIMIT"),
  );

  const nodes = parseNodes(
    redisUrl,
    pick(values["redis-cluster"], "REMESSENGER_REDIS_CLUSTER"),
    pick(values["node-id"], "REMESSENGER_NODE_ID"),
    pick(values["node-listen"], "REMESSENGER_NODE_LISTEN"),
    pick(values["lease-ttl-ms"], "REMESSENGER_LEASE_TTL_MS"),
    pick(values.durability, "REMESSENGER_DURABILITY"),
  );

  return {
    listen,
    grpcListen,
    nodes,
    dataDir: pick(values.data, "REMESSENGER_DATA") ?? "./data",
    redisUrl,
    tls: certFile !== undefined && keyFile !== undefined ? { certFile, keyFile } : null,
    tunnel,
    logLevel: logLevel as ServerConfig["logLevel"],
  };
}

const DURABILITY_RULES = new Set(["replica", "replica-strict", "master"]);

function parseNodes(
  redisUrl: string | null,
  cluster: string | undefined,
  nodeId: string | undefined,
  nodeListen: string | undefined,
  leaseTtl: string | undefined,
  durability: string | undefined,
): NodesConfig {
  if (cluster !== undefined && redisUrl !== null) {
    throw new ConfigError("--redis and --redis-cluster exclude each other: give one store");
  }
  const redisCluster =
    cluster === undefined
      ? null
      : cluster
          .split(",")
          .filter((entry) => entry.trim() !== "")
          .map((entry) => parseHostPort(entry, "--redis-cluster"));
  if (redisCluster !== null && redisCluster.length === 0) {
    throw new ConfigError("--redis-cluster needs at least one HOST:PORT");
  }
  if (nodeId !== undefined && !/^[A-Za-z0-9._:-]{1,100}$/.test(nodeId)) {
    throw new ConfigError(`--node-id must be 1-100 of A-Z a-z 0-9 . _ : -, got ${JSON.stringify(nodeId)}`);
  }
  const leaseTtlMs = Number(leaseTtl ?? "5000");
  if (!Number.isInteger(leaseTtlMs) || leaseTtlMs < 300 || leaseTtlMs > 600_000) {
    throw new ConfigError(`--lease-ttl-ms must be an integer from 300 to 600000, got ${JSON.stringify(leaseTtl)}`);
  }
  const rule = durability ?? (redisCluster !== null ? "replica" : "master");
  if (!DURABILITY_RULES.has(rule)) {
    throw new ConfigError(`--durability must be one of ${[...DURABILITY_RULES].join(", ")}`);
  }
  return {
    redisCluster,
    nodeId: nodeId ?? null,
    nodeListen: parseHostPort(nodeListen ?? "127.0.0.1:0", "--node-listen"),
    leaseTtlMs,
    durability: rule as NodesConfig["durability"],
  };
}

function parseTunnel(
  zone: string | undefined,
  dnsListen: string | undefined,
  holdMs: string | undefined,
  rateLimit: string | undefined,
): TunnelConfig | null {
  if (zone === undefined) {
    if (dnsListen !== undefined) throw new ConfigError("--dns-listen needs --dns-zone: the zone the gateway answers");
    return null;
  }
  let canonical: string;
  try {
    canonical = normalizeZone(zone);
  } catch (error) {
    throw new ConfigError(`--dns-zone: ${(error as Error).message}`);
  }
  return {
    zone: canonical,
    dnsListen: dnsListen === undefined ? null : parseHostPort(dnsListen, "--dns-listen"),
    holdMs: wholeNumber(holdMs, "--dns-hold-ms", 300, 10_000),
    rateLimitPerSecond: wholeNumber(rateLimit, "--dns-rate-limit", 5_000, 1_000_000),
  };
}

function wholeNumber(value: string | undefined, what: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || parsed > max) throw new ConfigError(`${what} must be a whole number from 0 to ${max}`);
  return parsed;
}
