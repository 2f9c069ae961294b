/**
 * createTransports: which pipes a choice gives with which endpoints, and the
 * choices refused before any connect.
 */
import { encodeTunnelKey } from "@remessenger/protocol";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../../test/manual-clock.ts";
import { silentLogger } from "../runtime/logger.ts";
import { type TransportChoice, TransportConfigError, createTransports } from "./create-transports.ts";
import type { DnsExchange } from "./dns-exchange.ts";
import { isSwitchingTransports } from "./ladder-transports.ts";

const TUNNEL = { zone: "t.example", publicKey: encodeTunnelKey(new Uint8Array(32).fill(7)) };

function exchange(name: string): DnsExchange {
  return {
    name,
    maxInFlight: 1,
    exchange: () => Promise.reject(new Error("not in this test")),
    close: () => undefined,
  };
}

function build(
  transport: TransportChoice,
  options: { tunnel?: boolean; dns?: boolean; dohUrls?: string[]; doh?: (url: string) => DnsExchange } = {},
) {
  return createTransports({
    endpoints: {
      serverUrls: "http://127.0.0.1:1,http://127.0.0.1:2",
      tunnel: options.tunnel === false ? undefined : TUNNEL,
      dohUrls: options.dohUrls ?? [],
    },
    transport,
    exchanges: {
      ...(options.dns === false ? {} : { dns: exchange("DNS 127.0.0.1:53") }),
      ...(options.doh === undefined ? {} : { doh: options.doh }),
    },
    logger: silentLogger,
    clock: new ManualClock(),
  });
}

function rungs(factory: ReturnType<typeof createTransports>): string[] {
  if (!isSwitchingTransports(factory)) throw new Error("not a ladder");
  return factory.health.map((rung) => rung.kind);
}

describe("createTransports", () => {
  it("builds the ladder for auto: every pipe the endpoints and exchanges allow, best first", () => {
    expect(rungs(build("auto"))).toEqual(["websocket", "https", "doh", "dns"]);
    expect(rungs(build("auto", { dns: false }))).toEqual(["websocket", "https", "doh"]);
    expect(rungs(build("auto", { tunnel: false }))).toEqual(["websocket", "https"]);
  });

  it("builds one pipe for each single choice", () => {
    for (const [choice, kind] of [
      ["ws", "websocket"],
      ["https", "https"],
      ["doh", "doh"],
      ["dns", "dns"],
    ] as const) {
      const factory = build(choice);
      expect(isSwitchingTransports(factory)).toBe(false);
      expect(factory.kind).toBe(kind);
    }
  });

  it("asks the platform for a DoH exchange per resolver, the server's own /dns-query when none is given", () => {
    const asked: string[] = [];
    const doh = (url: string): DnsExchange => {
      asked.push(url);
      return exchange(`DoH ${url}`);
    };
    build("doh", { doh });
    build("doh", { doh, dohUrls: ["https://a.example/dns-query", "https://b.example/dns-query"] });
    expect(asked).toEqual([
      "http://127.0.0.1:1/dns-query",
      "https://a.example/dns-query",
      "https://b.example/dns-query",
    ]);
  });

  it("refuses a tunnel without the server's tunnel, and plain DNS without a resolver", () => {
    const problem = (make: () => unknown): string | undefined => {
      try {
        make();
        return undefined;
      } catch (error) {
        return error instanceof TransportConfigError ? error.problem : "other";
      }
    };
    expect(problem(() => build("doh", { tunnel: false }))).toBe("no-tunnel");
    expect(problem(() => build("dns", { tunnel: false }))).toBe("no-tunnel");
    expect(problem(() => build("dns", { dns: false }))).toBe("no-resolver");
    expect(problem(() => build("ws", { tunnel: false, dns: false }))).toBeUndefined();
  });
});
