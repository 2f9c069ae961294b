/**
 * RFC 8484 DoH over node:http2 for the Node client: Unbound and Knot
 * Resolver serve DoH over HTTP/2 only, and Node's fetch() speaks HTTP/1.1.
 * HTTP/2 connections to the resolver URL, reopened after they fail: a
 * second one opens when the first has as many streams open as the resolver
 * allows (Unbound: 100), since further streams would wait in our queue
 * carrying stale acks; GET with `?dns=` (Knot Resolver refuses interleaved
 * POST streams), POST above 512 bytes; a stream refused with REFUSED_STREAM
 * is retried once; 429 honours Retry-After.
 */
import http2 from "node:http2";
import {
  DNS_MESSAGE_TYPE,
  type DnsExchange,
  DnsExchangeError,
  type DnsExchangeOptions,
  MAX_GET_QUERY_BYTES,
  base64UrlEncode,
  dohGetUrl,
  retryAfterMs,
} from "../index.ts";
import { ErrorCode, RemessengerError } from "@remessenger/protocol";

/** Streams one connection carries at most (the resolver may allow fewer; Unbound and others allow 100). */
const MAX_STREAMS_PER_CONNECTION = 100;
/** Connections to one resolver at most; past their streams, requests queue on the least busy one. */
const MAX_CONNECTIONS = 4;

interface Connection {
  session: http2.ClientHttp2Session;
  streams: number;
}

export interface NodeHttp2DohExchangeOptions {
  url: string;
  maxInFlight?: number;
  /** Accept a self-signed certificate (tests, private resolvers). */
  isInsecure?: boolean;
  /** Extra CA certificates (PEM) to trust. */
  ca?: string;
}

export class NodeHttp2DohExchange implements DnsExchange {
  readonly name: string;
  readonly maxInFlight: number;
  private readonly url: URL;
  private readonly options: NodeHttp2DohExchangeOptions;
  private connections: Connection[] = [];

  constructor(options: NodeHttp2DohExchangeOptions) {
    this.url = new URL(options.url);
    if (this.url.protocol !== "https:" && this.url.protocol !== "http:") {
      throw new Error(`a DoH URL is https:// (or http:// for tests), got ${options.url}`);
    }
    this.options = options;
    this.name = `DoH ${this.url.toString()}`;
    this.maxInFlight = options.maxInFlight ?? 96;
  }

  async exchange(query: Uint8Array, options: DnsExchangeOptions): Promise<Uint8Array> {
    try {
      return await this.once(query, options);
    } catch (error) {
      if (error instanceof RefusedStream && !options.signal.aborted) return this.once(query, options);
      throw error;
    }
  }

  close(): void {
    for (const { session } of this.connections.splice(0)) session.close();
  }

  /** A connection with a free stream, a new one while there are fewer than MAX_CONNECTIONS, else the least busy. */
  private connection(): Connection {
    this.connections = this.connections.filter(({ session }) => !session.closed && !session.destroyed);
    let leastBusy: Connection | undefined;
    for (const connection of this.connections) {
      const allowed = Math.min(
        MAX_STREAMS_PER_CONNECTION,
        connection.session.remoteSettings.maxConcurrentStreams ?? MAX_STREAMS_PER_CONNECTION,
      );
      if (connection.streams < allowed) return connection;
      if (leastBusy === undefined || connection.streams < leastBusy.streams) leastBusy = connection;
    }
    if (leastBusy !== undefined && this.connections.length >= MAX_CONNECTIONS) return leastBusy;
    const session = http2.connect(this.url.origin, {
      ...(this.options.isInsecure === true ? { rejectUnauthorized: false } : {}),
      ...(this.options.ca === undefined ? {} : { ca: this.options.ca }),
    });
    const connection: Connection = { session, streams: 0 };
    const forget = (): void => {
      // Streams on it fail with their own errors; the next exchange picks or opens another.
      this.connections = this.connections.filter((known) => known !== connection);
    };
    session.on("error", forget);
    session.on("close", forget);
    session.unref();
    this.connections.push(connection);
    return connection;
  }

  /** The `:path` of a GET: the URL's path and query with `dns=` set. */
  private getPath(query: Uint8Array): string {
    if (this.url.search === "") return `${this.url.pathname}?dns=${base64UrlEncode(query)}`;
    const target = new URL(dohGetUrl(this.url.toString(), query));
    return `${target.pathname}${target.search}`;
  }

  private once(query: Uint8Array, { signal, timeoutMs }: DnsExchangeOptions): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      const isGet = query.length <= MAX_GET_QUERY_BYTES;
      let stream: http2.ClientHttp2Stream;
      let connection: Connection;
      try {
        connection = this.connection();
        stream = connection.session.request({
          ":method": isGet ? "GET" : "POST",
          ":path": isGet ? this.getPath(query) : `${this.url.pathname}${this.url.search}`,
          accept: DNS_MESSAGE_TYPE,
          ...(isGet ? {} : { "content-type": DNS_MESSAGE_TYPE }),
        });
      } catch (cause) {
        this.close();
        reject(new DnsExchangeError("network", `${this.name}: ${(cause as Error).message}`, { cause }));
        return;
      }
      connection.streams += 1;
      stream.once("close", () => {
        connection.streams -= 1;
      });
      const chunks: Buffer[] = [];
      let status = 0;
      let retryAfter: string | undefined;
      let isDone = false;
      const finish = (error: Error | undefined, body?: Uint8Array): void => {
        if (isDone) return;
        isDone = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        // Cancel only a stream that did not finish (timeout, abort): a reset per answered query costs the resolver.
        if (body === undefined && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
        if (body !== undefined) resolve(body);
        else reject(error ?? new Error("no answer"));
      };
      const onAbort = (): void => {
        finish(abortError(signal));
      };
      const timer = setTimeout(() => {
        finish(new DnsExchangeError("timeout", `${this.name}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      stream.on("response", (headers) => {
        status = headers[":status"] ?? 0;
        const header = headers["retry-after"] as string | string[] | undefined;
        retryAfter = Array.isArray(header) ? header[0] : header;
      });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        if (status === 429) {
          finish(
            new DnsExchangeError("rate-limited", `${this.name}: rate limited (429)`, {
              retryAfterMs: retryAfterMs(retryAfter, Date.now()),
            }),
          );
        } else if (status !== 200) {
          finish(new DnsExchangeError("network", `${this.name}: HTTP ${status}`));
        } else {
          finish(undefined, new Uint8Array(Buffer.concat(chunks)));
        }
      });
      stream.on("close", () => {
        // Every stream closes, answered or not: build the error (a stack trace) only when it is one.
        if (isDone) return;
        finish(
          new DnsExchangeError("network", `${this.name}: stream closed (${stream.rstCode ?? 0}) before the answer`),
        );
      });
      stream.on("error", (error: Error) => {
        const code = (error as { code?: string }).code;
        if (code === "ERR_HTTP2_STREAM_ERROR" && /REFUSED_STREAM/.test(error.message)) {
          finish(new RefusedStream(error.message));
          return;
        }
        finish(new DnsExchangeError("network", `${this.name}: ${error.message}`, { cause: error }));
      });
      if (isGet) stream.end();
      else stream.end(query);
    });
  }
}

/** The server refused the stream (too many open): retried on a fresh connection (UNAVAILABLE). */
class RefusedStream extends RemessengerError {
  override readonly name = "RefusedStream";
  constructor(message: string) {
    super(ErrorCode.ERROR_CODE_UNAVAILABLE, message);
  }
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error("aborted");
}
