/**
 * The main listener: plain HTTP/1.1 for loopback and behind a TLS proxy, or
 * HTTPS with HTTP/2 and HTTP/1.1 on one port when a certificate is given.
 * Routes are few and fixed: the WebSocket upgrade, /healthz, and (later) the
 * HTTPS frame pipe and DoH. Everything else is 404.
 */
import { readFileSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2, { type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";

export type UpgradeHandler = (request: IncomingMessage, socket: Duplex, head: Buffer) => boolean;
export type RequestHandler = (
  request: IncomingMessage | Http2ServerRequest,
  response: ServerResponse | Http2ServerResponse,
) => boolean;

export interface HttpListenerOptions {
  host: string;
  port: number;
  tls?: { certFile: string; keyFile: string };
  log: Logger;
}

export class HttpListener {
  private readonly server: http.Server | http2.Http2SecureServer;
  private readonly upgradeHandlers: UpgradeHandler[] = [];
  private readonly requestHandlers: RequestHandler[] = [];
  private readonly options: HttpListenerOptions;

  constructor(options: HttpListenerOptions) {
    this.options = options;
    const onRequest = (
      request: IncomingMessage | Http2ServerRequest,
      response: ServerResponse | Http2ServerResponse,
    ): void => {
      this.route(request, response);
    };
    this.server = options.tls
      ? http2.createSecureServer(
          { cert: readFileSync(options.tls.certFile), key: readFileSync(options.tls.keyFile), allowHTTP1: true },
          onRequest,
        )
      : http.createServer(onRequest);
    this.server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      for (const handler of this.upgradeHandlers) if (handler(request, socket, head)) return;
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
    });
    this.server.on("clientError", (_error: Error, socket: Duplex) => {
      socket.destroy();
    });
  }

  onUpgrade(handler: UpgradeHandler): void {
    this.upgradeHandlers.push(handler);
  }

  onRequest(handler: RequestHandler): void {
    this.requestHandlers.push(handler);
  }

  /** Binds and resolves with the bound address (port 0 picks a free one). */
  async listen(): Promise<{ host: string; port: number; url: string }> {
    const { host, port } = this.options;
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const address = this.server.address() as AddressInfo;
    const scheme = this.options.tls ? "https" : "http";
    const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
    return { host: address.address, port: address.port, url: `${scheme}://${shownHost}:${address.port}` };
  }

  /** Stops accepting; open connections are closed by their edges first. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => {
        resolve();
      });
      if ("closeAllConnections" in this.server) this.server.closeAllConnections();
    });
  }

  private route(
    request: IncomingMessage | Http2ServerRequest,
    anyResponse: ServerResponse | Http2ServerResponse,
  ): void {
    // The HTTP/2 compatibility response has the same writeHead/end as HTTP/1.1's.
    const response = anyResponse as ServerResponse;
    try {
      for (const handler of this.requestHandlers) if (handler(request, anyResponse)) return;
      const path = new URL(request.url ?? "/", "http://localhost").pathname;
      if (path === "/healthz") {
        response.writeHead(200, { "content-type": "text/plain" });
        response.end("ok\n");
        return;
      }
      response.writeHead(404, { "content-type": "text/plain" });
      response.end("not found\n");
    } catch (error) {
      this.options.log.error({ err: error, url: request.url }, "http request failed");
      if (!response.headersSent) response.writeHead(500);
      response.end();
    }
  }
}
