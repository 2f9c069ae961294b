/**
 * DNS over HTTPS (RFC 8484) at /dns-query on the main listener, HTTP/1.1 and
 * HTTP/2: GET with `?dns=` (base64url) and POST with an
 * `application/dns-message` body, both answered by the tunnel gateway.
 * Clients reach it directly, or through any DoH resolver that recurses to
 * the authoritative gateway.
 *
 * Bad requests get HTTP errors (400 bad parameter, 405 method, 413 too
 * large, 415 content type); a source over its rate gets 429 with
 * Retry-After. CORS is open so browsers can use it directly.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Logger } from "pino";
import type { TunnelGateway } from "./tunnel-gateway.ts";

export const DOH_PATH = "/dns-query";
const DNS_MESSAGE = "application/dns-message";
const MAX_MESSAGE_BYTES = 65_535;

export class DohEdge {
  private readonly gateway: TunnelGateway;
  private readonly log: Logger;

  constructor(gateway: TunnelGateway, log: Logger) {
    this.gateway = gateway;
    this.log = log;
  }

  /** Takes the request when it is for /dns-query; returns false otherwise. */
  handle(request: IncomingMessage | Http2ServerRequest, anyResponse: ServerResponse | Http2ServerResponse): boolean {
    const url = new URL(request.url ?? "/", "http://localhost");
    if (url.pathname !== DOH_PATH) return false;
    const response = anyResponse as ServerResponse;
    const fail = (status: number, text: string, headers: Record<string, string> = {}): void => {
      response.writeHead(status, { "content-type": "text/plain", "access-control-allow-origin": "*", ...headers });
      response.end(`${text}\n`);
    };
    const source = request.socket.remoteAddress ?? "?";
    const answer = (bytes: Uint8Array): void => {
      this.gateway.handle({ bytes, source, carrier: "doh" }).then(
        (result) => {
          if (result.kind === "rate-limited") {
            fail(429, "too many queries", { "retry-after": "1" });
            return;
          }
          if (result.kind === "drop") {
            fail(400, "not a DNS query");
            return;
          }
          response.writeHead(200, {
            "content-type": DNS_MESSAGE,
            "content-length": String(result.bytes.length),
            "cache-control": "max-age=0",
            "access-control-allow-origin": "*",
          });
          response.end(result.bytes);
        },
        (error: unknown) => {
          this.log.error({ err: error }, "DoH query failed");
          fail(500, "internal error");
        },
      );
    };
    switch (request.method) {
      case "OPTIONS":
        response.writeHead(204, {
          "access-control-allow-origin": "*",
          "access-control-allow-methods": "GET, POST",
          "access-control-allow-headers": "content-type, accept",
          "access-control-max-age": "86400",
        });
        response.end();
        return true;
      case "GET": {
        const param = url.searchParams.get("dns");
        if (param === null || !/^[A-Za-z0-9_-]+$/.test(param)) {
          fail(400, "missing or malformed dns parameter");
          return true;
        }
        const bytes = new Uint8Array(Buffer.from(param, "base64url"));
        if (bytes.length > MAX_MESSAGE_BYTES) fail(413, "query too large");
        else answer(bytes);
        return true;
      }
      case "POST": {
        if ((request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() !== DNS_MESSAGE) {
          fail(415, `POST needs content-type ${DNS_MESSAGE}`);
          return true;
        }
        const chunks: Buffer[] = [];
        let total = 0;
        let isTooLarge = false;
        request.on("data", (chunk: Buffer) => {
          total += chunk.length;
          if (total > MAX_MESSAGE_BYTES) isTooLarge = true;
          else chunks.push(chunk);
        });
        request.on("end", () => {
          if (isTooLarge) fail(413, "query too large");
          else answer(new Uint8Array(Buffer.concat(chunks)));
        });
        request.on("error", () => {
          // The client went away; nothing to answer.
        });
        return true;
      }
      case undefined:
      default:
        fail(405, "use GET or POST", { allow: "GET, POST, OPTIONS" });
        return true;
    }
  }
}
