/**
 * Which pipe a CLI command uses, from --transport and the profile: the
 * WebSocket, the HTTPS pipe, the DoH tunnel (through --doh-url resolvers, or
 * the server's own /dns-query) or the plain-DNS tunnel (through --resolver,
 * or the system resolver). The tunnel needs the zone and key the profile
 * learned at init or from an invite.
 *
 * "auto" (the default) is the transport ladder: WebSocket, then HTTPS, then
 * (when the profile knows the server's tunnel) DoH, then plain DNS, switching
 * down when a rung fails and back up when a better one heals.
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
  TransportLadder,
  systemClock,
  webSocketTransportFactory,
} from "@remessenger/client-core";
import type { CliConfig } from "../cli-config.ts";
import { usageError } from "../cli-error.ts";
import { NodeDnsExchange, NodeHttp2DohExchange } from "@remessenger/client-core/node";

export interface ProfileTunnel {
  zone: string;
  publicKey: string;
}

/** Where a client may reach its server: from the profile, overridden by the command line. */
export interface Endpoints {
  /** One URL or several nodes, comma-separated. */
  serverUrls: string;
  tunnel: ProfileTunnel | undefined;
  /** DoH resolvers; empty: the server's own /dns-query. */
  dohUrls: readonly string[];
  /** The plain-DNS resolver; undefined: the system's. */
  resolver: { host: string; port: number } | undefined;
}

/**
 * `serverUrls` may list several nodes of one deployment, comma-separated: the
 * WebSocket and HTTPS pipes then use one until it fails, then the next. The
 * DNS tunnel goes through resolvers to the deployment's zone, so it uses the
 * first URL only for defaults.
 */
export function transportFactoryFor(
  config: Pick<CliConfig, "transport" | "nameBudget">,
  endpoints: Endpoints,
  logger: Logger,
): TransportFactory {
  const urls = splitServerUrls(endpoints.serverUrls);
  const serverUrl = urls[0] ?? endpoints.serverUrls;
  const webSocket = (): TransportFactory =>
    failoverTransportFactory(urls.map((url) => webSocketTransportFactory({ serverUrl: url })));
  const https = (): TransportFactory =>
    failoverTransportFactory(urls.map((url) => httpsTransportFactory({ serverUrl: url })));
  const tunnel = (kind: "doh" | "dns", endpoint: TunnelEndpoint): TransportFactory =>
    dnsTunnelTransportFactory({
      kind,
      exchanges: kind === "doh" ? dohExchanges(endpoints.dohUrls, serverUrl) : [dnsExchange(endpoints.resolver)],
      tunnel: endpoint,
      logger,
      ...(config.nameBudget === undefined ? {} : { nameBudget: config.nameBudget }),
    });
  switch (config.transport) {
    case "auto": {
      const endpoint = tunnelEndpoint(endpoints.tunnel);
      const rungs = [webSocket(), https()];
      if (endpoint !== undefined) {
        rungs.push(tunnel("doh", endpoint));
        // Without a resolver to ask (none given, none configured), plain DNS is no rung.
        if (endpoints.resolver !== undefined || getServers().length > 0) rungs.push(tunnel("dns", endpoint));
      }
      return new TransportLadder({ rungs, clock: systemClock });
    }
    case "ws":
      return webSocket();
    case "https":
      return https();
    case "doh":
    case "dns": {
      const endpoint = tunnelEndpoint(endpoints.tunnel);
      if (endpoint === undefined) {
        throw usageError(
          `this profile does not know a DNS tunnel for ${serverUrl}: the server has none, or the profile predates it (init with an invite: remessenger init --invite ...)`,
        );
      }
      return tunnel(config.transport, endpoint);
    }
  }
}

function tunnelEndpoint(tunnel: ProfileTunnel | undefined): TunnelEndpoint | undefined {
  return tunnel === undefined ? undefined : { zone: tunnel.zone, publicKey: decodeTunnelKey(tunnel.publicKey) };
}

function dohExchanges(dohUrls: readonly string[], serverUrl: string): DnsExchange[] {
  const urls = dohUrls.length > 0 ? dohUrls : [new URL("/dns-query", serverUrl).toString()];
  // Resolvers serve DoH over HTTP/2 with TLS; a plain http:// URL (our server on loopback) is HTTP/1.1.
  return urls.map((url) =>
    url.startsWith("https:") ? new NodeHttp2DohExchange({ url }) : new FetchDohExchange({ url }),
  );
}

function dnsExchange(resolver: Endpoints["resolver"]): DnsExchange {
  if (resolver !== undefined) return new NodeDnsExchange(resolver);
  const system = getServers()[0];
  if (system === undefined)
    throw usageError("no system DNS resolver is configured; give one with --resolver HOST:PORT");
  const match = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(system);
  return new NodeDnsExchange({ host: match?.[1] ?? system, port: Number(match?.[2] ?? 53) });
}
