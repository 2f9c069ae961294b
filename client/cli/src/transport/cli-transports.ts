/**
 * What the CLI adds to the pipes the core builds (createTransports, through
 * openProfile/createProfile: the WebSocket, the HTTPS pipe, the DoH and
 * plain-DNS tunnels, or "auto", the ladder over them): what only Node can do,
 * DoH over HTTP/2 for https:// resolvers and plain DNS through --resolver or
 * the system resolver, and the words a user gets when --transport cannot work
 * with the profile (the tunnel needs the zone and key the profile learned at
 * init or from an invite).
 */
import { getServers } from "node:dns";
import {
  type DnsExchange,
  FetchDohExchange,
  type ProfileEndpoints,
  TransportConfigError,
  type TransportExchanges,
  splitServerUrls,
} from "@remessenger/client-core";
import { NodeDnsExchange, NodeHttp2DohExchange } from "@remessenger/client-core/node";
import { usageError } from "../cli-error.ts";

/** The DNS exchanges Node makes for a profile's resolver: DoH over HTTP/2 or fetch, plain DNS when a resolver is known. */
export function nodeExchanges(resolver: ProfileEndpoints["resolver"]): TransportExchanges {
  const dns = dnsExchange(resolver);
  return { doh: dohExchange, ...(dns === undefined ? {} : { dns }) };
}

/** A transport choice the profile's endpoints cannot make, as a usage error; any other error as it is. */
export function transportProblem(error: unknown, serverUrls: string): unknown {
  if (!(error instanceof TransportConfigError)) return error;
  switch (error.problem) {
    case "no-tunnel":
      return usageError(
        `this profile does not know a DNS tunnel for ${splitServerUrls(serverUrls)[0] ?? serverUrls}: the server has none, or the profile predates it (init with an invite: remessenger init --invite ...)`,
      );
    case "no-resolver":
      return usageError("no system DNS resolver is configured; give one with --resolver HOST:PORT");
    case "no-server-url":
      return usageError(error.message);
  }
}

/** Resolvers serve DoH over HTTP/2 with TLS; a plain http:// URL (our server on loopback) is HTTP/1.1. */
function dohExchange(url: string): DnsExchange {
  return url.startsWith("https:") ? new NodeHttp2DohExchange({ url }) : new FetchDohExchange({ url });
}

/** Plain DNS through --resolver, else the first system resolver; none when neither is there. */
function dnsExchange(resolver: ProfileEndpoints["resolver"]): DnsExchange | undefined {
  if (resolver !== undefined) return new NodeDnsExchange(resolver);
  const system = getServers()[0];
  if (system === undefined) return undefined;
  const match = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(system);
  return new NodeDnsExchange({ host: match?.[1] ?? system, port: Number(match?.[2] ?? 53) });
}
