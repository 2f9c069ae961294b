/**
 * The HTTPS pipe: frames over plain HTTP requests, for networks that break
 * WebSocket upgrades (proto/remessenger/v1/pipe.proto has the routes).
 *
 * Each pipe is one FrameSession, like a WebSocket connection. Uploads feed its
 * frames in order; downloads are long-polls that take everything queued.
 * Invariants:
 * - frames leave in the order the session wrote them, each in one download;
 * - at most MAX_QUEUED_BYTES wait per pipe: above HIGH_WATER the session's
 *   pump pauses, above the cap the pipe closes (a client that stopped polling);
 * - a pipe nobody polls for IDLE_TIMEOUT_MS closes, so sessions never leak;
 * - the number of pipes is bounded (MAX_PIPES).
 */
import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Logger } from "pino";
import { MAX_FRAME_BYTES, PipeFrames, PipeOpened } from "@remessenger/protocol";
import type { Clock } from "../core/clock.ts";
import type { Messenger } from "../core/messenger.ts";
import { FrameSession } from "./frame-session.ts";

export const PIPE_PATH = "/v1/pipe";
export const POLL_WAIT_MS = 20_000;
const IDLE_TIMEOUT_MS = 60_000;
const HIGH_WATER_BYTES = 1024 * 1024;
const LOW_WATER_BYTES = 256 * 1024;
const MAX_QUEUED_BYTES = 16 * 1024 * 1024;
/** A download carries at most this much; the rest waits for the next one. */
const MAX_DOWNLOAD_BYTES = 2 * 1024 * 1024;
const MAX_UPLOAD_BYTES = 4 * MAX_FRAME_BYTES;
const MAX_FRAMES_PER_UPLOAD = 1024;
export const MAX_PIPES = 10_000;
const CONTENT_TYPE = "application/x-protobuf";

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

const ROUTE = /^\/v1\/pipe(?:\/([A-Za-z0-9_-]{22})(?:\/(up|down))?)?$/;

export interface HttpsPipeEdgeOptions {
  messenger: Messenger;
  clock: Clock;
  log: Logger;
}

/** One pipe: its session, the frames waiting for a download, and the download waiting for frames. */
class HttpPipe {
  readonly id: string;
  readonly session: FrameSession;
  private queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private waiting: { response: AnyResponse; timer: NodeJS.Timeout } | undefined;
  private isPaused = false;
  closed: { code: number; reason: string } | undefined;
  lastSeenMs: number;
  private readonly onClosed: (pipe: HttpPipe) => void;

  constructor(id: string, options: HttpsPipeEdgeOptions, log: Logger, onClosed: (pipe: HttpPipe) => void) {
    this.id = id;
    this.lastSeenMs = options.clock.nowMs();
    this.onClosed = onClosed;
    this.session = new FrameSession(
      options.messenger,
      {
        send: (frame) => {
          this.enqueue(frame);
        },
        isWritable: () => {
          if (this.queuedBytes < HIGH_WATER_BYTES) return true;
          this.isPaused = true;
          return false;
        },
        close: (code, reason) => {
          this.close(code, reason);
        },
      },
      log,
    );
  }

  /** Answers a download now if frames wait (or the pipe closed), else holds it until they do. */
  download(response: AnyResponse, nowMs: number): void {
    this.lastSeenMs = nowMs;
    if (this.waiting !== undefined) this.flush(); // a newer poll replaces an older one
    if (this.queue.length > 0 || this.closed !== undefined) {
      this.respond(response);
      return;
    }
    const timer = setTimeout(() => {
      this.flush();
    }, POLL_WAIT_MS);
    this.waiting = { response, timer };
    response.on("close", () => {
      if (this.waiting?.response === response) {
        clearTimeout(this.waiting.timer);
        this.waiting = undefined;
      }
    });
  }

  /** True when nobody polled for `idleMs`. */
  isIdle(nowMs: number, idleMs: number): boolean {
    return this.waiting === undefined && nowMs - this.lastSeenMs > idleMs;
  }

  close(code: number, reason: string): void {
    if (this.closed !== undefined) return;
    this.closed = { code, reason };
    this.session.onClose();
    this.flush();
    this.onClosed(this);
  }

  private enqueue(frame: Uint8Array): void {
    if (this.closed !== undefined) return;
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    if (this.queuedBytes > MAX_QUEUED_BYTES) {
      this.close(1008, "nobody downloads the pipe's frames");
      return;
    }
    // Frames written in one turn leave in one download.
    if (this.waiting !== undefined && this.queue.length === 1) queueMicrotask(() => this.flush());
  }

  private flush(): void {
    const waiting = this.waiting;
    if (waiting === undefined) return;
    this.waiting = undefined;
    clearTimeout(waiting.timer);
    this.respond(waiting.response);
  }

  private respond(response: AnyResponse): void {
    let size = 0;
    let count = 0;
    while (count < this.queue.length) {
      const next = this.queue[count]?.length ?? 0;
      if (count > 0 && size + next > MAX_DOWNLOAD_BYTES) break;
      size += next;
      count += 1;
    }
    const frames = this.queue.splice(0, count);
    this.queuedBytes -= size;
    const isClosed = this.closed !== undefined && this.queue.length === 0;
    const body = PipeFrames.encode({
      frames,
      closed: isClosed,
      closeCode: isClosed ? (this.closed?.code ?? 0) : 0,
      closeReason: isClosed ? (this.closed?.reason ?? "") : "",
    }).finish();
    send(response, 200, body);
    if (this.isPaused && this.queuedBytes < LOW_WATER_BYTES && this.closed === undefined) {
      this.isPaused = false;
      this.session.onWritable();
    }
  }
}

export class HttpsPipeEdge {
  private readonly pipes = new Map<string, HttpPipe>();
  private readonly options: HttpsPipeEdgeOptions;
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: HttpsPipeEdgeOptions) {
    this.options = options;
    this.sweeper = setInterval(() => {
      this.closeIdle(IDLE_TIMEOUT_MS);
    }, IDLE_TIMEOUT_MS / 4);
    this.sweeper.unref();
  }

  /** Handles the pipe's routes; returns false for any other path. */
  handle(request: AnyRequest, response: AnyResponse): boolean {
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    const match = ROUTE.exec(path);
    if (match === null) return false;
    const [, pipeId, direction] = match;
    const method = request.method ?? "GET";
    if (pipeId === undefined) {
      if (method !== "POST") send(response, 405, "use POST to open a pipe\n");
      else this.open(request, response);
      return true;
    }
    const pipe = this.pipes.get(pipeId);
    if (pipe === undefined) {
      send(response, 404, "no such pipe (closed or expired); open a new one\n");
      return true;
    }
    if (direction === undefined && method === "DELETE") {
      pipe.close(1000, "closed by the client");
      send(response, 204, "");
    } else if (direction === "up" && method === "POST") {
      this.upload(pipe, request, response);
    } else if (direction === "down" && method === "GET") {
      pipe.download(response, this.options.clock.nowMs());
    } else {
      send(response, 405, "method not allowed\n");
    }
    return true;
  }

  get pipeCount(): number {
    return this.pipes.size;
  }

  /** Closes every pipe and stops the sweeper (shutdown). */
  close(): void {
    clearInterval(this.sweeper);
    for (const pipe of [...this.pipes.values()]) pipe.close(1001, "server shutting down");
  }

  /** Closes pipes nobody polled for `idleMs`; returns how many. */
  closeIdle(idleMs: number): number {
    const now = this.options.clock.nowMs();
    let closed = 0;
    for (const pipe of [...this.pipes.values()]) {
      if (pipe.isIdle(now, idleMs)) {
        pipe.close(1001, "idle: nobody polled");
        closed += 1;
      }
    }
    return closed;
  }

  private open(request: AnyRequest, response: AnyResponse): void {
    if (this.pipes.size >= MAX_PIPES) {
      send(response, 503, "too many pipes, retry later\n", { "retry-after": "5" });
      return;
    }
    const id = randomBytes(16).toString("base64url");
    const log = this.options.log.child({ transport: "https", remote: request.socket.remoteAddress });
    const pipe = new HttpPipe(id, this.options, log, (closed) => this.pipes.delete(closed.id));
    this.pipes.set(id, pipe);
    pipe.session.open(this.options.clock.nowMs());
    send(response, 200, PipeOpened.encode({ pipeId: id, pollWaitMs: POLL_WAIT_MS }).finish());
  }

  private upload(pipe: HttpPipe, request: AnyRequest, response: AnyResponse): void {
    pipe.lastSeenMs = this.options.clock.nowMs();
    readBody(request, MAX_UPLOAD_BYTES).then(
      (body) => {
        if (body === undefined) {
          send(response, 413, `an upload carries at most ${MAX_UPLOAD_BYTES} bytes\n`);
          return;
        }
        let frames: Uint8Array[];
        try {
          frames = PipeFrames.decode(body).frames;
        } catch {
          send(response, 400, "not a PipeFrames message\n");
          return;
        }
        if (frames.length > MAX_FRAMES_PER_UPLOAD) {
          send(response, 413, `an upload carries at most ${MAX_FRAMES_PER_UPLOAD} frames\n`);
          return;
        }
        if (pipe.closed !== undefined) {
          send(response, 410, "the pipe closed\n");
          return;
        }
        for (const frame of frames) pipe.session.onFrame(frame);
        send(response, 204, "");
      },
      (error: unknown) => {
        this.options.log.warn({ err: error, transport: "https" }, "upload failed");
        if (!response.headersSent) send(response, 400, "upload failed\n");
      },
    );
  }
}

/** The body, or undefined when it is over `limit` bytes. */
function readBody(request: AnyRequest, limit: number): Promise<Uint8Array | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let isOver = false;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) isOver = true;
      else chunks.push(chunk);
    });
    request.on("end", () => {
      resolve(isOver ? undefined : new Uint8Array(Buffer.concat(chunks)));
    });
    request.on("error", reject);
  });
}

function send(
  anyResponse: AnyResponse,
  status: number,
  body: Uint8Array | string,
  headers: Record<string, string> = {},
): void {
  // The HTTP/2 compatibility response has the same writeHead/end as HTTP/1.1's.
  const response = anyResponse as ServerResponse;
  if (response.headersSent || response.destroyed) return;
  const isBinary = typeof body !== "string";
  response.writeHead(status, {
    "content-type": isBinary ? CONTENT_TYPE : "text/plain",
    "cache-control": "no-store",
    ...headers,
  });
  response.end(body);
}
