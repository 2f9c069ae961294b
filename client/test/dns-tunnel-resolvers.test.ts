/**
 * The DNS tunnel through real recursive resolvers from Debian (Unbound,
 * Knot Resolver, dnsdist) started on loopback with the tunnel zone stubbed
 * to our gateway, and through our own DoH and DNS listeners directly: each
 * path carries a 1:1 conversation of 200 messages, every one delivered once
 * and in order, also with the query name budget forced to 101 and 72.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, it } from "vitest";
import { NodeDnsExchange, NodeHttp2DohExchange } from "@remessenger/client-core/node";
import { FetchDohExchange, type DnsExchange } from "@remessenger/client-core";
import {
  type RunningResolver,
  ensureResolverPackages,
  startDnsdist,
  startKnotResolver,
  startUnbound,
} from "../../scripts/harness/resolvers.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type Gateway, conversation, tunnelOf } from "./tunnel-conversation.ts";

const ZONE = "t.example";
const MESSAGES = 200;

let server: TestServer;
let gateway: Gateway;
const resolvers: RunningResolver[] = [];

beforeAll(async () => {
  ensureResolverPackages();
  server = await startServer({
    extraArgs: ["--dns-zone", ZONE, "--dns-listen", "127.0.0.1:0", "--dns-rate-limit", "0"],
  });
  gateway = tunnelOf(server.logs);
}, 600_000);

afterAll(async () => {
  await Promise.all(resolvers.splice(0).map((resolver) => resolver.stop()));
  await server.cleanup();
});

function talk(kind: "doh" | "dns", exchanges: () => DnsExchange[], nameBudget?: number): Promise<void> {
  return conversation({
    serverUrl: server.url,
    gateway,
    kind,
    exchanges,
    messages: MESSAGES,
    ...(nameBudget === undefined ? {} : { nameBudget }),
  });
}

function doh(resolver: RunningResolver): () => DnsExchange[] {
  const ca = readFileSync(resolver.caFile, "utf8");
  return () => [new NodeHttp2DohExchange({ url: resolver.dohUrl, ca })];
}

function plain(address: { host: string; port: number }): () => DnsExchange[] {
  return () => [new NodeDnsExchange(address)];
}

describe("the DNS tunnel carries a 200-message conversation, once and in order", () => {
  it("straight to the gateway over plain DNS (UDP, TCP on truncation)", async () => {
    await talk("dns", plain(gateway.dns));
  });

  it("straight to the gateway's own DoH endpoint", async () => {
    await talk("doh", () => [new FetchDohExchange({ url: `${server.url}/dns-query` })]);
  });

  describe("through Unbound (default settings: QNAME minimisation on)", () => {
    let unbound: RunningResolver;
    beforeAll(async () => {
      unbound = await startUnbound({ zone: ZONE, gateway: gateway.dns });
      resolvers.push(unbound);
    });

    it("over plain DNS", async () => {
      await talk("dns", plain(unbound.dns));
    });

    it("over its DoH listener (HTTP/2)", async () => {
      await talk("doh", doh(unbound));
    });

    it("with query names capped at 101 characters", async () => {
      await talk("dns", plain(unbound.dns), 101);
    });

    it("with query names capped at 72 characters", async () => {
      await talk("doh", doh(unbound), 72);
    });
  });

  it("through Unbound with use-caps-for-id (0x20 case randomisation)", async () => {
    const unbound = await startUnbound({ zone: ZONE, gateway: gateway.dns, capsForId: true });
    resolvers.push(unbound);
    await talk("dns", plain(unbound.dns));
  });

  it("through Knot Resolver's DoH (HTTP/2, GET)", async () => {
    const knot = await startKnotResolver({ zone: ZONE, gateway: gateway.dns });
    resolvers.push(knot);
    await talk("doh", doh(knot));
  });

  it("through dnsdist's DoH", async () => {
    const dnsdist = await startDnsdist({ zone: ZONE, gateway: gateway.dns });
    resolvers.push(dnsdist);
    await talk("doh", doh(dnsdist));
  });
});
