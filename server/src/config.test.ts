import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "./config.ts";

describe("parseConfig", () => {
  it("defaults to loopback ports 8080/8081 and the embedded store in ./data", () => {
    expect(parseConfig([], {})).toEqual({
      listen: { host: "127.0.0.1", port: 8080 },
      grpcListen: { host: "127.0.0.1", port: 8081 },
      dataDir: "./data",
      redisUrl: null,
      tls: null,
      tunnel: null,
      nodes: {
        redisCluster: null,
        nodeId: null,
        nodeListen: { host: "127.0.0.1", port: 0 },
        leaseTtlMs: 5000,
        durability: "master",
      },
      logLevel: "info",
    });
  });

  it("configures many nodes: a Redis Cluster from flags or env, node id, lease TTL, durability", () => {
    expect(
      parseConfig(["--redis-cluster", "127.0.0.1:7001,[::1]:7002", "--node-id", "n1", "--lease-ttl-ms", "2000"], {}),
    ).toMatchObject({
      redisUrl: null,
      nodes: {
        redisCluster: [
          { host: "127.0.0.1", port: 7001 },
          { host: "::1", port: 7002 },
        ],
        nodeId: "n1",
        leaseTtlMs: 2000,
        durability: "replica",
      },
    });
    expect(
      parseConfig([], {
        REMESSENGER_REDIS_CLUSTER: "r1:7000",
        REMESSENGER_NODE_ID: "a.b:1",
        REMESSENGER_DURABILITY: "replica-strict",
      }),
    ).toMatchObject({
      nodes: { redisCluster: [{ host: "r1", port: 7000 }], nodeId: "a.b:1", durability: "replica-strict" },
    });
    expect(() => parseConfig(["--redis-cluster", "r1:7000", "--redis", "redis://r:1"], {})).toThrow(/exclude/);
    expect(() => parseConfig(["--redis-cluster", "r1"], {})).toThrow(/--redis-cluster/);
    expect(() => parseConfig(["--node-id", "bad id"], {})).toThrow(/--node-id/);
    expect(() => parseConfig(["--lease-ttl-ms", "10"], {})).toThrow(/--lease-ttl-ms/);
    expect(() => parseConfig(["--durability", "maybe"], {})).toThrow(/--durability/);
  });

  it("configures the DNS tunnel from flags or env: zone canonical, listener optional, limits bounded", () => {
    expect(parseConfig(["--dns-zone", "T.Example.", "--dns-listen", "127.0.0.1:5300"], {})).toMatchObject({
      tunnel: {
        zone: "t.example",
        dnsListen: { host: "127.0.0.1", port: 5300 },
        holdMs: 300,
        rateLimitPerSecond: 5000,
      },
    });
    expect(
      parseConfig([], {
        REMESSENGER_DNS_ZONE: "t.example.net",
        REMESSENGER_DNS_HOLD_MS: "0",
        REMESSENGER_DNS_RATE_LIMIT: "0",
      }),
    ).toMatchObject({ tunnel: { zone: "t.example.net", dnsListen: null, holdMs: 0, rateLimitPerSecond: 0 } });
    expect(() => parseConfig(["--dns-listen", "127.0.0.1:53"], {})).toThrow(/needs --dns-zone/);
    expect(() => parseConfig(["--dns-zone", "bad_label.example"], {})).toThrow(/--dns-zone/);
    expect(() => parseConfig(["--dns-zone", "t.example", "--dns-hold-ms", "-1"], {})).toThrow(/--dns-hold-ms/);
  });

  it("takes env vars and lets flags win over them", () => {
    const config = parseConfig(["--listen", "[::1]:9000"], {
      REMESSENGER_LISTEN: "0.0.0.0:1",
      REMESSENGER_DATA: "/var/lib/rm",
      REMESSENGER_REDIS: "redis://127.0.0.1:7000",
      REMESSENGER_GRPC_LISTEN: "off",
    });
    expect(config).toMatchObject({
      listen: { host: "::1", port: 9000 },
      grpcListen: null,
      dataDir: "/var/lib/rm",
      redisUrl: "redis://127.0.0.1:7000",
    });
  });

  it("rejects malformed addresses, half a TLS pair, unknown flags and bad URLs with a clear message", () => {
    expect(() => parseConfig(["--listen", "8080"], {})).toThrow(/--listen must be HOST:PORT/);
    expect(() => parseConfig(["--listen", "h:70000"], {})).toThrow(ConfigError);
    expect(() => parseConfig(["--tls-cert", "c.pem"], {})).toThrow(/go together/);
    expect(() => parseConfig(["--bogus"], {})).toThrow(ConfigError);
    expect(() => parseConfig(["--redis", "localhost:6379"], {})).toThrow(/redis:\/\//);
  });

  it("answers --help", () => {
    expect(parseConfig(["--help"], {})).toBe("help");
  });
});
