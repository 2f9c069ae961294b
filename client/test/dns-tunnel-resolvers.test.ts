/**
 * The DNS tunnel through real recursive resolvers from Debian (Unbound,
 * Knot Resolver, dnsdist) started on loopback with the tunnel zone stubbed
 * to our gateway, and through our own DoH and DNS listeners directly: each
 * path carries a 1:1 conversation of 200 messages, every one delivered once
 * and in order, also with the query name budget forced to 101 and 72.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NodeDnsExchange } from "../cli/src/transport/node-dns-exchange.ts";
import { NodeHttp2DohExchange } from "../cli/src/transport/node-http2-doh-exchange.ts";
import type { ClientSession } from "../core/src/session/client-session.ts";
import { FetchDohExchange, type DnsExchange } from "../core/src/transport/dns-exchange.ts";
import { dnsTunnelTransportFactory } from "../core/src/transport/dns-tunnel-transport.ts";
import { ChatKind } from "../core/src/wire/proto.ts";
import {
  type RunningResolver,
  ensureResolverPackages,
  startDnsdist,
  startKnotResolver,
  startUnbound,
} from "../../scripts/harness/resolvers.ts";
import { type TestServer, startServer } from "../../scripts/harness/server.ts";
import { type TestDevice, registerTestDevice, sessionFor } from "./devices.ts";
import { waitForEvent } from "./wait.ts";

const ZONE = "t.example";
const MESSAGES = 200;

interface Gateway {
  zone: string;
  publicKey: Uint8Array;
  dns: { host: string; port: number };
}

let server: TestServer;
let gateway: Gateway;
const resolvers: RunningResolver[] = [];

function tunnelOf(logs: readonly string[]): Gateway {
  for (const line of logs) {
    if (!line.includes('"listening"')) continue;
    const { tunnel } = JSON.parse(line) as { tunnel?: { zone: string; publicKey: string; dns: string } };
    if (tunnel === undefined) break;
    const [host = "", port = ""] = tunnel.dns.split(/:(?=\d+$)/);
    return {
      zone: tunnel.zone,
      publicKey: new Uint8Array(Buffer.from(tunnel.publicKey, "base64url")),
      dns: { host, port: Number(port) },
    };
  }
  throw new Error("the server announced no tunnel");
}

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

async function conversation(kind: "doh" | "dns", exchanges: () => DnsExchange[], nameBudget?: number): Promise<void> {
  const alice = await registerTestDevice(server.url, "alice");
  const bob = await registerTestDevice(server.url, "bob");
  const tunnelSession = (device: TestDevice): ClientSession =>
    sessionFor(device, {
      transports: dnsTunnelTransportFactory({
        kind,
        exchanges: exchanges(),
        tunnel: { zone: gateway.zone, publicKey: gateway.publicKey },
        ...(nameBudget === undefined ? {} : { nameBudget }),
      }),
      timing: { connectTimeoutMs: 10_000, requestTimeoutMs: 15_000, pingIntervalMs: 5_000, pingTimeoutMs: 10_000 },
    });
  const receiver = tunnelSession(alice);
  const sender = tunnelSession(bob);
  const received: { seq: number; text: string | undefined }[] = [];
  const allIn = new Promise<void>((resolve) => {
    receiver.events.on("message", ({ message, isOwnDevice }) => {
      if (isOwnDevice) return;
      received.push({
        seq: message.seq,
        text: message.content?.body?.$case === "text" ? message.content.body.value : undefined,
      });
      if (received.length >= MESSAGES) resolve();
    });
  });
  try {
    await receiver.start();
    await sender.start();
    await waitForEvent(
      sender.events,
      "connection",
      (status) => status.state === "connected",
      30_000,
      "sender connected",
    );
    const { chat } = await sender.request(
      "createChat",
      { kind: ChatKind.CHAT_KIND_DIRECT, memberUserIds: [alice.profile.userId], title: "" },
      { timeoutMs: 20_000 },
    );
    if (chat === undefined) throw new Error("no chat");
    for (let i = 0; i < MESSAGES; i += 1) await sender.send(chat.chatId, `message ${i} via ${kind}`);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      allIn,
      new Promise((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`only ${received.length} of ${MESSAGES} messages arrived`));
        }, 90_000);
      }),
    ]);
    clearTimeout(timer);
    expect(received.map((message) => message.text)).toEqual(
      Array.from({ length: MESSAGES }, (_, i) => `message ${i} via ${kind}`),
    );
    expect(received.map((message) => message.seq)).toEqual(Array.from({ length: MESSAGES }, (_, i) => i + 1));
    expect(sender.status.transport).toBe(kind);
  } finally {
    await Promise.all([receiver.stop(), sender.stop()]);
  }
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
    await conversation("dns", plain(gateway.dns));
  });

  it("straight to the gateway's own DoH endpoint", async () => {
    await conversation("doh", () => [new FetchDohExchange({ url: `${server.url}/dns-query` })]);
  });

  describe("through Unbound (default settings: QNAME minimisation on)", () => {
    let unbound: RunningResolver;
    beforeAll(async () => {
      unbound = await startUnbound({ zone: ZONE, gateway: gateway.dns });
      resolvers.push(unbound);
    });

    it("over plain DNS", async () => {
      await conversation("dns", plain(unbound.dns));
    });

    it("over its DoH listener (HTTP/2)", async () => {
      await conversation("doh", doh(unbound));
    });

    it("with query names capped at 101 characters", async () => {
      await conversation("dns", plain(unbound.dns), 101);
    });

    it("with query names capped at 72 characters", async () => {
      await conversation("doh", doh(unbound), 72);
    });
  });

  it("through Unbound with use-caps-for-id (0x20 case randomisation)", async () => {
    const unbound = await startUnbound({ zone: ZONE, gateway: gateway.dns, capsForId: true });
    resolvers.push(unbound);
    await conversation("dns", plain(unbound.dns));
  });

  it("through Knot Resolver's DoH (HTTP/2, GET)", async () => {
    const knot = await startKnotResolver({ zone: ZONE, gateway: gateway.dns });
    resolvers.push(knot);
    await conversation("doh", doh(knot));
  });

  it("through dnsdist's DoH", async () => {
    const dnsdist = await startDnsdist({ zone: ZONE, gateway: gateway.dns });
    resolvers.push(dnsdist);
    await conversation("doh", doh(dnsdist));
  });
});
