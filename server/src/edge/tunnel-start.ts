/**
 * Starts the DNS tunnel for the composition root: the gateway's static
 * X25519 key (derived from the store's server secret, so it survives
 * restarts and every node on one store shares it), the gateway, DoH at
 * /dns-query on the main listener, and the UDP/TCP listener when asked.
 */
import type { Logger } from "pino";
import { hkdfSha256, selectX25519Provider, type TunnelInfo } from "@remessenger/protocol";
import type { TunnelConfig } from "../config.ts";
import { systemClock } from "../core/clock.ts";
import type { Messenger } from "../core/messenger.ts";
import { DnsEdge } from "./dns-edge.ts";
import { DOH_PATH, DohEdge } from "./doh-edge.ts";
import type { HttpListener } from "./http-listener.ts";
import { TunnelGateway } from "./tunnel-gateway.ts";

export interface RunningTunnel {
  gateway: TunnelGateway;
  /** What clients learn in the hello. */
  hello: TunnelInfo;
  /** For the "listening" log line. */
  info: { zone: string; publicKey: string; dns: string | null; doh: string };
  close(): Promise<void>;
}

export async function startTunnel(options: {
  config: TunnelConfig;
  secret: Uint8Array;
  messenger: Messenger;
  http: HttpListener;
  log: Logger;
}): Promise<RunningTunnel> {
  const { config, secret, messenger, http, log } = options;
  const x25519 = await selectX25519Provider();
  const privateKey = hkdfSha256(secret, new Uint8Array(0), "remessenger tunnel static key v1", 32);
  const publicKey = await x25519.publicKey(privateKey);
  const gateway = new TunnelGateway({
    zone: config.zone,
    key: { publicKey, privateKey },
    x25519,
    messenger,
    clock: systemClock,
    log: log.child({ transport: "dns-gateway" }),
    holdMs: config.holdMs,
    rateLimitPerSecond: config.rateLimitPerSecond,
  });
  const doh = new DohEdge(gateway, log);
  http.onRequest((request, response) => doh.handle(request, response));
  let dns: DnsEdge | null = null;
  let dnsAddress: string | null = null;
  if (config.dnsListen !== null) {
    dns = new DnsEdge({ ...config.dnsListen, gateway, log });
    const bound = await dns.listen();
    dnsAddress = `${bound.host.includes(":") ? `[${bound.host}]` : bound.host}:${bound.port}`;
  }
  return {
    gateway,
    hello: { zone: config.zone, publicKey },
    info: {
      zone: config.zone,
      publicKey: Buffer.from(publicKey).toString("base64url"),
      dns: dnsAddress,
      doh: DOH_PATH,
    },
    close: async () => {
      gateway.close();
      await dns?.close();
    },
  };
}
