/**
 * Which pipe a CLI command uses, from --transport and the profile: the
 * WebSocket, the HTTPS pipe, the DoH tunnel (through --doh-url resolvers, or
 * the server's own /dns-query) or the plain-DNS tunnel (through --resolver,
 * or the system resolver). The tunnel needs the zone and key the profile
 * learned at init or from an invite.
 *
 * "auto" is where the transport ladder of issue 7 plugs in; until it lands,
 * auto means the WebSocket.
 */
import { getServers } from "node:dns";
import {
  type DnsExchange,
  FetchDohExchange,
  type Logger,
  type TransportFactory,
  type TunnelEndpoint,
  decodeTunnelKey,
  dnsTunnelTransportFactory,
  failoverTransportFactory,
  httpsTransportFactory,
  splitServerUrls,
  webSocketTransportFactory,
} from "../../../core/src/index.ts";
import type { CliConfig } from "../cli-config.ts";
import { usageError } from "../cli-error.ts";
import { NodeDnsExchange } from "./node-dns-exchange.ts";
import { NodeHttp2DohExchange } from "./node-http2-doh-exchange.ts";

export interface ProfileTunnel {
  zone: string;
  publicKey: string;
}

/**
 * `serverUrls` may list several nodes of one deployment, comma-separated: the
 * WebSocket and HTTPS pipes then use one until it fails, then the next. The
 * DNS tunnel goes through resolvers to the deployment's zone, so it uses the
 * first URL only for defaults.
 */
export function transportFactoryFor(
  config: CliConfig,
  serverUrls: string,
  tunnel: ProfileTunnel | undefined,
  logger: Logger,
): TransportFactory {
  const urls = splitServerUrls(serverUrls);
  const serverUrl = urls[0] ?? serverUrls;
  switch (config.transport) {
    case "auto":
    case "ws":
      return failoverTransportFactory(urls.map((url) => webSocketTransportFactory({ serverUrl: url })));
    case "https":
      return failoverTransportFactory(urls.map((url) => httpsTransportFactory({ serverUrl: url })));
    case "doh":
    case "dns": {
      if (tunnel === undefined) {
        throw usageError(
          `this profile does not know a DNS tunnel for ${serverUrl}: the server has none, or the profile predates it (init with an invite: remessenger init --invite ...)`,
        );
      }
      const endpoint: TunnelEndpoint = { zone: tunnel.zone, publicKey: decodeTunnelKey(tunnel.publicKey) };
      const exchanges = config.transport === "doh" ? dohExchanges(config, serverUrl) : [dnsExchange(config)];
      return dnsTunnelTransportFactory({
        kind: config.transport,
        exchanges,
        tunnel: endpoint,
        logger,
        ...(config.nameBudget === undefined ? {} : { nameBudget: config.nameBudget }),
      });
    }
  }
}

function dohExchanges(config: CliConfig, serverUrl: string): DnsExchange[] {
  const urls = config.dohUrls.length > 0 ? config.dohUrls : [new URL("/dns-query", serverUrl).toString()];
  // Resolvers serve DoH over HTTP/2 with TLS; a plain http:// URL (our server on loopback) is HTTP/1.1.
  return urls.map((url) =>
    url.startsWith("https:") ? new NodeHttp2DohExchange({ url }) : new FetchDohExchange({ url }),
  );
}

function dnsExchange(config: CliConfig): DnsExchange {
  if (config.resolver !== undefined) return new NodeDnsExchange(config.resolver);
  const system = getServers()[0];
  if (system === undefined)
    throw usageError("no system DNS resolver is configured; give one with --resolver HOST:PORT");
  const match = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(system);
  return new NodeDnsExchange({ host: match?.[1] ?? system, port: Number(match?.[2] ?? 53) });
}
