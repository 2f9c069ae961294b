/**
 * The WebSocket pipe: one binary WebSocket message per frame at /v1/ws.
 * Backpressure comes from the socket's buffer: above HIGH_WATER the session's
 * pump pauses, and resumes when a write completes below LOW_WATER. Dead peers
 * are found by WebSocket pings and dropped.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { WebSocketServer, type WebSocket } from "ws";
import { MAX_FRAME_BYTES, type TunnelInfo } from "@remessenger/protocol";
import type { Clock } from "../core/clock.ts";
import type { Messenger } from "../core/messenger.ts";
import { FrameSession } from "./frame-session.ts";

export const WEBSOCKET_PATH = "/v1/ws";
const HIGH_WATER_BYTES = 1024 * 1024;
const LOW_WATER_BYTES = 256 * 1024;
const HEARTBEAT_INTERVAL_MS = 30_000;

export interface WebSocketEdgeOptions {
  messenger: Messenger;
  clock: Clock;
  log: Logger;
  /** Told to every client in the hello, when the server has a DNS tunnel. */
  tunnel?: TunnelInfo;
}

export class WebSocketEdge {
  private readonly wss: WebSocketServer;
  private readonly options: WebSocketEdgeOptions;
  private readonly alive = new WeakSet<WebSocket>();
  private readonly heartbeat: NodeJS.Timeout;

  constructor(options: WebSocketEdgeOptions) {
    this.options = options;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
    this.heartbeat = setInterval(() => {
      for (const socket of this.wss.clients) {
        if (!this.alive.has(socket)) {
          socket.terminate();
          continue;
        }
        this.alive.delete(socket);
        socket.ping();
      }
    }, HEARTBEAT_INTERVAL_MS);
    this.heartbeat.unref();
  }

  /** Takes an HTTP upgrade for our path; returns false when it is not ours. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    if (path !== WEBSOCKET_PATH) return false;
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      this.accept(ws, request);
    });
    return true;
  }

  get connectionCount(): number {
    return this.wss.clients.size;
  }

  /** Closes every connection (clients reconnect elsewhere or later). */
  close(code = 1001, reason = "server shutting down"): void {
    clearInterval(this.heartbeat);
    for (const socket of this.wss.clients) socket.close(code, reason);
    this.wss.close();
  }

  private accept(ws: WebSocket, request: IncomingMessage): void {
    const { messenger, clock, log } = this.options;
    const remote = request.socket.remoteAddress;
    const connectionLog = log.child({ transport: "ws", remote });
    let isPaused = false;
    // Frames written in one turn of the event loop (an answer, pushes, receipts)
    // leave in one write: measured, one writev per frame was a quarter of the CPU.
    const socket = request.socket;
    let isCorked = false;
    const session = new FrameSession(
      messenger,
      {
        send: (frame) => {
          if (ws.readyState !== ws.OPEN) return;
          if (!isCorked) {
            isCorked = true;
            socket.cork();
            process.nextTick(() => {
              isCorked = false;
              socket.uncork();
            });
          }
          ws.send(frame, { binary: true }, () => {
            if (isPaused && ws.bufferedAmount < LOW_WATER_BYTES) {
              isPaused = false;
              session.onWritable();
            }
          });
        },
        isWritable: () => {
          if (ws.bufferedAmount < HIGH_WATER_BYTES) return true;
          isPaused = true;
          return false;
        },
        close: (code, reason) => {
          ws.close(code, reason);
        },
      },
      connectionLog,
    );
    this.alive.add(ws);
    ws.on("pong", () => this.alive.add(ws));
    ws.on("message", (data, isBinary) => {
      if (!isBinary) {
        session.onUnframedInput("text messages are not frames; send binary");
        return;
      }
      session.onFrame(toBytes(data));
    });
    ws.on("close", () => {
      session.onClose();
    });
    ws.on("error", (error) => {
      // ws reports oversized and malformed WebSocket frames here and closes (1009 / 1002).
      connectionLog.warn({ err: error, deviceId: session.authedDevice?.deviceId }, "websocket error");
    });
    session.open(clock.nowMs(), this.options.tunnel);
  }
}

function toBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return new Uint8Array(Buffer.concat(data));
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
