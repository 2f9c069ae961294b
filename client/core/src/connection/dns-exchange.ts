/**
 * The DnsExchange port: send one DNS query message, get its response
 * message. The tunnel (dns-tunnel-transport.ts) runs on it and knows nothing
 * of how the message travels. Adapters:
 * - FetchDohExchange (here): RFC 8484 over fetch(), for browsers and the app;
 * - NodeHttp2DohExchange (client/cli): RFC 8484 over node:http2, because
 *   Unbound and Knot Resolver serve DoH over HTTP/2 only;
 * - NodeDnsExchange (client/cli): plain DNS over UDP, a fresh source port per
 *   query, TCP when the answer comes back truncated.
 */
import { ErrorCode, RemessengerError } from "@remessenger/protocol";

export type DnsExchangeFailure =
  /** No response within the deadline. */
  | "timeout"
  /** The resolver said slow down (HTTP 429); `retryAfterMs` says how long. */
  | "rate-limited"
  /** Anything else on the way: refused connection, HTTP error, reset. */
  | "network";

export class DnsExchangeError extends RemessengerError {
  override readonly name = "DnsExchangeError";
  readonly failure: DnsExchangeFailure;

  constructor(failure: DnsExchangeFailure, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(
      failure === "rate-limited" ? ErrorCode.ERROR_CODE_RATE_LIMITED : ErrorCode.ERROR_CODE_UNAVAILABLE,
      message,
      options,
    );
    this.failure = failure;
  }
}

export interface DnsExchangeOptions {
  signal: AbortSignal;
  timeoutMs: number;
}

export interface DnsExchange {
  /** For logs and the connection state: "DoH https://…/dns-query", "DNS 127.0.0.1:53". */
  readonly name: string;
  /** Queries this exchange may have in flight at once (its share of the resolver's budget). */
  readonly maxInFlight: number;
  /** Resolves with the response message; rejects with DnsExchangeError (or the signal's reason). */
  exchange(query: Uint8Array, options: DnsExchangeOptions): Promise<Uint8Array>;
  /** Releases connections; later exchanges open new ones. */
  close(): void;
}

/** Retry-After (seconds or an HTTP date) in ms; 1 s when absent or unreadable. */
export function retryAfterMs(header: string | null | undefined, nowMs: number): number {
  if (header === null || header === undefined || header === "") return 1_000;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds * 1_000, 600_000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? 1_000 : Math.min(Math.max(0, at - nowMs), 600_000);
}

/** base64url without padding (RFC 8484 §4.1 `dns` parameter). */
export function base64UrlEncode(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The GET URL of a DoH query: the template URL with `?dns=` (RFC 8484 asks for id 0 for caching; ours are unique anyway). */
export function dohGetUrl(endpoint: string, query: Uint8Array): string {
  const url = new URL(endpoint);
  url.searchParams.set("dns", base64UrlEncode(query));
  return url.toString();
}

export const DNS_MESSAGE_TYPE = "application/dns-message";
/** Google's DoH refuses GET URLs whose query is over 512 bytes; above this, POST. */
export const MAX_GET_QUERY_BYTES = 512;

export interface FetchDohExchangeOptions {
  url: string;
  maxInFlight?: number;
  fetch?: typeof globalThis.fetch;
}

/** RFC 8484 over fetch(): GET preferred (cacheable paths are fine: every name is unique), POST for big queries. */
export class FetchDohExchange implements DnsExchange {
  readonly name: string;
  readonly maxInFlight: number;
  private readonly url: string;
  private readonly fetchImpl: typeof globalThis.fetch;

  constructor(options: FetchDohExchangeOptions) {
    this.url = new URL(options.url).toString();
    this.name = `DoH ${this.url}`;
    this.maxInFlight = options.maxInFlight ?? 32;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  async exchange(query: Uint8Array, { signal, timeoutMs }: DnsExchangeOptions): Promise<Uint8Array> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = AbortSignal.any([signal, timeout]);
    const isGet = query.length <= MAX_GET_QUERY_BYTES;
    let response: Response;
    try {
      response = await this.fetchImpl(isGet ? dohGetUrl(this.url, query) : this.url, {
        method: isGet ? "GET" : "POST",
        headers: isGet ? { accept: DNS_MESSAGE_TYPE } : { accept: DNS_MESSAGE_TYPE, "content-type": DNS_MESSAGE_TYPE },
        ...(isGet ? {} : { body: query as Uint8Array<ArrayBuffer> }),
        signal: combined,
      });
    } catch (cause) {
      if (signal.aborted) throw signal.reason;
      if (timeout.aborted) throw new DnsExchangeError("timeout", `${this.name}: no answer within ${timeoutMs} ms`);
      throw new DnsExchangeError("network", `${this.name}: ${cause instanceof Error ? cause.message : "failed"}`, {
        cause,
      });
    }
    if (response.status === 429) {
      throw new DnsExchangeError("rate-limited", `${this.name}: rate limited (429)`, {
        retryAfterMs: retryAfterMs(response.headers.get("retry-after"), Date.now()),
      });
    }
    if (!response.ok) throw new DnsExchangeError("network", `${this.name}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }

  close(): void {
    // fetch() pools its connections itself.
  }
}
