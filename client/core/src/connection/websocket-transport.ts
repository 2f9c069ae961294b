/**
 * The WebSocket pipe: one binary WebSocket message per frame, on the WHATWG
 * WebSocket that browsers, WebViews and Node 24 all have. The URL is the
 * server base with `/v1/ws` (http → ws, https → wss).
 *
 * It only moves bytes (see transport.ts). Inbound text messages and
 * oversized frames are protocol violations: the pipe closes (1003 / 1009).
 * A local close reports at once instead of waiting for the closing
 * handshake, because a stalled peer may never answer it.
 */
import { abortReason } from "../runtime/clock.ts";
import { errorText } from "../runtime/error-text.ts";
import { RemessengerError, MAX_FRAME_BYTES, ErrorCode } from "@remessenger/protocol";
import {
  CLOSE_ABNORMAL,
  CLOSE_MESSAGE_TOO_BIG,
  CLOSE_NORMAL,
  CLOSE_UNSUPPORTED_DATA,
  type Transport,
  type TransportCloseReason,
  type TransportConnectOptions,
  type TransportFactory,
  type TransportHandlers,
} from "./transport.ts";

export const WEBSOCKET_PATH = "/v1/ws";
/** The WebSocket API caps close reasons at 123 UTF-8 bytes. */
const MAX_CLOSE_REASON_CHARS = 120;

/** The WebSocket URL of a server base URL: http(s)://host[:port][/base] → ws(s)://host[:port][/base]/v1/ws. */
export function webSocketUrl(serverUrl: string): string {
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch (cause) {
    throw new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, `not a server URL: ${serverUrl}`, { cause });
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  else if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new RemessengerError(
      ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
      `server URL must be http(s) or ws(s): ${serverUrl}`,
    );
  }
  url.pathname = url.pathname.replace(/\/+$/, "") + WEBSOCKET_PATH;
  url.search = "";
  url.hash = "";
  return url.toString();
}

/** The WebSocket constructor to use; the global one unless a platform brings its own. */
export type WebSocketConstructor = new (url: string) => WebSocket;

export interface WebSocketTransportOptions {
  serverUrl: string;
  WebSocket?: WebSocketConstructor;
}

export function webSocketTransportFactory(options: WebSocketTransportOptions): TransportFactory {
  const url = webSocketUrl(options.serverUrl);
  return { kind: "websocket", create: (handlers) => new WebSocketTransport(url, handlers, options.WebSocket) };
}

type Phase = "new" | "connecting" | "open" | "closed";

export class WebSocketTransport implements Transport {
  readonly kind = "websocket";
  private readonly url: string;
  private readonly handlers: TransportHandlers;
  private readonly WebSocketImpl: WebSocketConstructor | undefined;
  private socket: WebSocket | undefined;
  private phase: Phase = "new";
  private reason: TransportCloseReason | undefined;

  constructor(url: string, handlers: TransportHandlers, WebSocketImpl?: WebSocketConstructor) {
    this.url = url;
    this.handlers = handlers;
    this.WebSocketImpl = WebSocketImpl ?? ("WebSocket" in globalThis ? globalThis.WebSocket : undefined);
  }

  get bufferedAmount(): number {
    return this.socket?.bufferedAmount ?? 0;
  }

  get closeReason(): TransportCloseReason | undefined {
    return this.reason;
  }

  connect({ signal, timeoutMs }: TransportConnectOptions): Promise<void> {
    if (this.phase !== "new") return Promise.reject(new Error("a WebSocketTransport connects once"));
    if (signal.aborted) return Promise.reject(abortReason(signal));
    const Impl = this.WebSocketImpl;
    if (Impl === undefined) {
      return Promise.reject(new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "this platform has no WebSocket"));
    }
    this.phase = "connecting";
    return new Promise<void>((resolve, reject) => {
      let socket: WebSocket;
      try {
        socket = new Impl(this.url);
      } catch (cause) {
        this.phase = "closed";
        reject(unreachable(this.url, errorText(cause), cause));
        return;
      }
      socket.binaryType = "arraybuffer";
      this.socket = socket;
      let lastError = "";

      const settle = (error: Error | undefined): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        if (error === undefined) {
          resolve();
          return;
        }
        this.phase = "closed";
        this.reason = { code: CLOSE_NORMAL, reason: error.message, isLocal: true };
        detach(socket);
        closeQuietly(socket, CLOSE_NORMAL, "connect abandoned");
        reject(error);
      };
      const onAbort = (): void => {
        settle(abortReason(signal));
      };
      const timer = setTimeout(() => {
        settle(
          new RemessengerError(
            ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED,
            `no WebSocket to ${this.url} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });

      socket.onopen = () => {
        this.phase = "open";
        settle(undefined);
      };
      socket.onerror = (event) => {
        // Details, where a platform gives any (Node: the socket error), come with the error event.
        lastError = errorText((event as Event & { error?: unknown }).error, "") || lastError;
      };
      socket.onclose = (event) => {
        if (this.phase === "connecting") {
          // 1006 with no detail: refused, reset or not a WebSocket endpoint; browsers say no more.
          const detail =
            event.code === CLOSE_ABNORMAL ? "connection failed" : `closed with ${event.code} ${event.reason}`.trim();
          settle(unreachable(this.url, lastError || detail, undefined));
          return;
        }
        this.finish({ code: event.code, reason: event.reason || lastError || "connection closed", isLocal: false });
      };
      socket.onmessage = (event: MessageEvent<unknown>) => {
        this.onMessage(event.data);
      };
    });
  }

  send(frame: Uint8Array): void {
    const socket = this.socket;
    if (this.phase !== "open" || socket === undefined) {
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "the WebSocket is not open");
    }
    socket.send(frame as Uint8Array<ArrayBuffer>);
  }

  close(code: number, reason: string): void {
    if (this.phase !== "open") return;
    const socket = this.socket;
    // Report now: the closing handshake may never complete on a stalled link.
    this.finish({ code, reason, isLocal: true });
    if (socket !== undefined) {
      detach(socket);
      // Browsers accept only 1000 and 3000–4999 from applications; the real code is in `reason`.
      const wireCode = code === CLOSE_NORMAL || (code >= 3000 && code <= 4999) ? code : CLOSE_NORMAL;
      closeQuietly(socket, wireCode, reason.slice(0, MAX_CLOSE_REASON_CHARS));
    }
  }

  private onMessage(data: unknown): void {
    if (this.phase !== "open") return;
    if (!(data instanceof ArrayBuffer)) {
      this.close(CLOSE_UNSUPPORTED_DATA, "the server sent a text message; frames are binary");
      return;
    }
    if (data.byteLength > MAX_FRAME_BYTES) {
      this.close(
        CLOSE_MESSAGE_TOO_BIG,
        `the server sent a frame of ${data.byteLength} bytes (limit ${MAX_FRAME_BYTES})`,
      );
      return;
    }
    this.handlers.onFrame(new Uint8Array(data));
  }

  private finish(reason: TransportCloseReason): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    this.reason = reason;
    this.handlers.onClose(reason);
  }
}

function unreachable(url: string, detail: string, cause: unknown): RemessengerError {
  return new RemessengerError(
    ErrorCode.ERROR_CODE_UNAVAILABLE,
    `cannot reach ${url}${detail ? `: ${detail}` : ""}`,
    cause === undefined ? undefined : { cause },
  );
}

function detach(socket: WebSocket): void {
  socket.onopen = null;
  socket.onclose = null;
  socket.onerror = null;
  socket.onmessage = null;
}

function closeQuietly(socket: WebSocket, code: number, reason: string): void {
  try {
    socket.close(code, reason);
  } catch {
    // close() throws only for a socket already closing: there is nothing left to close.
  }
}
