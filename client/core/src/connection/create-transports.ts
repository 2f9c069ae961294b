/**
 * Builds the pipe a client uses from where its server is and which transport
 * was asked for: one WebSocket or HTTPS pipe (failing over between a
 * deployment's nodes), one DNS tunnel (DoH or plain DNS), or "auto", the
 * transport ladder over all of them (WebSocket, HTTPS, then DoH and plain DNS
 * when the server's tunnel is known), switching down when a rung fails and
 * back up when a better one heals.
 *
 * The platform supplies only what the core cannot make itself: a plain-DNS
 * exchange (UDP/TCP to a resolver) and, where it has a better one than
 * fetch, the DoH exchange for a resolver URL.
 *
 * Invariants:
 * - A choice that cannot work is refused here with a TransportConfigError
 *   (its `problem` says which), never at the first connect.
 * - "auto" has a plain-DNS rung only when a DNS exchange was supplied.
 */
import { decodeTunnelKey, ErrorCode, RemessengerError } from "@remessenger/protocol";
import type { Clock } from "../runtime/clock.ts";
import type { Logger } from "../runtime/logger.ts";
import { type DnsExchange, FetchDohExchange } from "./dns-exchange.ts";
import { type TunnelEndpoint, dnsTunnelTransportFactory } from "./dns-tunnel-transport.ts";
import { failoverTransportFactory, splitServerUrls } from "./failover-transport.ts";
import { httpsTransportFactory } from "./https-transport.ts";
import { TransportLadder } from "./ladder-transports.ts";
import type { TransportFactory } from "./transport.ts";
import { webSocketTransportFactory } from "./websocket-transport.ts";

/** Which pipe to use: one of them, or the ladder over all ("auto"). */
export type TransportChoice = "auto" | "ws" | "https" | "doh" | "dns";

/** Where a client may reach its server. */
export interface TransportEndpoints {
  /** One URL or several nodes of one deployment, comma-separated. */
  serverUrls: string;
  /** The server's DNS tunnel: its zone and static key (base64url), when known. */
  tunnel: { zone: string; publicKey: string } | undefined;
  /** DoH resolvers; empty: the server's own /dns-query. */
  dohUrls: readonly string[];
}

/** The DNS exchanges the platform can make. */
export interface TransportExchanges {
  /** Plain DNS through a resolver; without it there is no plain-DNS pipe. */
  dns?: DnsExchange;
  /** The DoH exchange for a resolver URL; fetch when omitted. */
  doh?: (url: string) => DnsExchange;
}

export interface CreateTransportsOptions {
  endpoints: TransportEndpoints;
  transport: TransportChoice;
  exchanges: TransportExchanges;
  logger: Logger;
  clock: Clock;
  /** The longest DNS query name the tunnel starts with. */
  nameBudget?: number;
}

/** Why a transport choice cannot work with these endpoints. */
export type TransportConfigProblem = "no-server-url" | "no-tunnel" | "no-resolver";

/** Endpoints that cannot make the asked-for pipe (no server URL, no tunnel known, no resolver). */
export class TransportConfigError extends RemessengerError {
  override readonly name = "TransportConfigError";
  readonly problem: TransportConfigProblem;

  constructor(problem: TransportConfigProblem, message: string) {
    super(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message);
    this.problem = problem;
  }
}

/**
 * The WebSocket and HTTPS pipes use one of `serverUrls` until it fails, then
 * the next. The DNS tunnel goes through resolvers to the deployment's zone,
 * so it uses the first URL only for defaults (the server's own /dns-query).
 */
export function createTransports(options: CreateTransportsOptions): TransportFactory {
  const { endpoints, exchanges } = options;
  const urls = splitServerUrls(endpoints.serverUrls);
  const serverUrl = urls[0];
  if (serverUrl === undefined) throw new TransportConfigError("no-server-url", "no server URL given");
  const webSocket = (): TransportFactory =>
    failoverTransportFactory(urls.map((url) => webSocketTransportFactory({ serverUrl: url })));
  const https = (): TransportFactory =>
    failoverTransportFactory(urls.map((url) => httpsTransportFactory({ serverUrl: url })));
  const tunnel = (kind: "doh" | "dns", endpoint: TunnelEndpoint, exchange: readonly DnsExchange[]): TransportFactory =>
    dnsTunnelTransportFactory({
      kind,
      exchanges: exchange,
      tunnel: endpoint,
      logger: options.logger,
      clock: options.clock,
      ...(options.nameBudget === undefined ? {} : { nameBudget: options.nameBudget }),
    });
  const doh = (): DnsExchange[] => {
    const dohUrls = endpoints.dohUrls.length > 0 ? endpoints.dohUrls : [new URL("/dns-query", serverUrl).toString()];
    return dohUrls.map((url) => exchanges.doh?.(url) ?? new FetchDohExchange({ url }));
  };
  switch (options.transport) {
    case "auto": {
      const endpoint = tunnelEndpoint(endpoints);
      const rungs = [webSocket(), https()];
      if (endpoint !== undefined) {
        rungs.push(tunnel("doh", endpoint, doh()));
        // Without a resolver to ask, plain DNS is no rung.
        if (exchanges.dns !== undefined) rungs.push(tunnel("dns", endpoint, [exchanges.dns]));
      }
      return new TransportLadder({ rungs, clock: options.clock, logger: options.logger });
    }
    case "ws":
      return webSocket();
    case "https":
      return https();
    case "doh":
    case "dns": {
      const endpoint = tunnelEndpoint(endpoints);
      if (endpoint === undefined) {
        throw new TransportConfigError("no-tunnel", `no DNS tunnel is known for ${serverUrl}`);
      }
      if (options.transport === "doh") return tunnel("doh", endpoint, doh());
      if (exchanges.dns === undefined) {
        throw new TransportConfigError("no-resolver", "no DNS resolver to reach the tunnel through");
      }
      return tunnel("dns", endpoint, [exchanges.dns]);
    }
  }
}

function tunnelEndpoint(endpoints: TransportEndpoints): TunnelEndpoint | undefined {
  const { tunnel } = endpoints;
  return tunnel === undefined ? undefined : { zone: tunnel.zone, publicKey: decodeTunnelKey(tunnel.publicKey) };
}
