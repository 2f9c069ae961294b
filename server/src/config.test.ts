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
      logLevel: "info",
    });
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
