/**
 * Which pipe a CLI command uses, from --transport and the profile. The core
 * builds it (createTransports: the WebSocket, the HTTPS pipe, the DoH and
 * plain-DNS tunnels, or "auto", the ladder over them); the CLI supplies what
 * only Node can do: DoH over HTTP/2 for https:// resolvers, and plain DNS
 * through --resolver or the system resolver. The tunnel needs the zone and
 * key the profile learned at init or from an invite.
 */
import { getServers } from "node:dns";
import {
  type DnsExchange,
  FetchDohExchange,
  type Logger,
  TransportConfigError,
  type TransportFactory,
  createTransports,
  splitServerUrls,
  systemClock,
} from "@remessenger/client-core";
import { NodeDnsExchange, NodeHttp2DohExchange } from "@remessenger/client-core/node";
import type { CliConfig } from "../cli-config.ts";
import { usageError } from "../cli-error.ts";

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

export function transportFactoryFor(
  config: Pick<CliConfig, "transport" | "nameBudget">,
  endpoints: Endpoints,
  logger: Logger,
): TransportFactory {
  const dns = dnsExchange(endpoints.resolver);
  if (config.transport === "dns" && endpoints.tunnel !== undefined && dns === undefined) {
    throw usageError("no system DNS resolver is configured; give one with --resolver HOST:PORT");
  }
  try {
    return createTransports({
      endpoints,
      transport: config.transport,
      exchanges: { doh: dohExchange, ...(dns === undefined ? {} : { dns }) },
      logger,
      clock: systemClock,
      ...(config.nameBudget === undefined ? {} : { nameBudget: config.nameBudget }),
    });
  } catch (error) {
    if (error instanceof TransportConfigError && error.problem === "no-tunnel") {
      throw usageError(
        `this profile does not know a DNS tunnel for ${splitServerUrls(endpoints.serverUrls)[0] ?? endpoints.serverUrls}: the server has none, or the profile predates it (init with an invite: remessenger init --invite ...)`,
      );
    }
    if (error instanceof TransportConfigError) throw usageError(error.message);
    throw error;
  }
}

/** Resolvers serve DoH over HTTP/2 with TLS; a plain http:// URL (our server on loopback) is HTTP/1.1. */
function dohExchange(url: string): DnsExchange {
  return url.startsWith("https:") ? new NodeHttp2DohExchange({ url }) : new FetchDohExchange({ url });
}

/** Plain DNS through --resolver, else the first system resolver; none when neither is there. */
function dnsExchange(resolver: Endpoints["resolver"]): DnsExchange | undefined {
  if (resolver !== undefined) return new NodeDnsExchange(resolver);
  const system = getServers()[0];
  if (system === undefined) return undefined;
  const match = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(system);
  return new NodeDnsExchange({ host: match?.[1] ?? system, port: Number(match?.[2] ?? 53) });
}
