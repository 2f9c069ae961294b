/**
 * The HTTPS pipe (proto/remessenger/v1/pipe.proto): frames over plain HTTP
 * requests with fetch(), for networks that break WebSocket upgrades but let
 * HTTPS through. Browsers, WebViews and Node 24 all have fetch.
 *
 * One upload and one download are in flight at a time, so frames keep their
 * order both ways. Like every transport it is dumb: any failed request closes
 * the pipe and the session reconnects; there is no retransmission here.
 */
import { abortReason } from "../runtime/clock.ts";
import { errorText } from "../runtime/error-text.ts";
import { RemessengerError, MAX_FRAME_BYTES, ErrorCode, PipeFrames, PipeOpened } from "@remessenger/protocol";
import {
  CLOSE_ABNORMAL,
  CLOSE_MESSAGE_TOO_BIG,
  CLOSE_NORMAL,
  type Transport,
  type TransportCloseReason,
  type TransportConnectOptions,
  type TransportFactory,
  type TransportHandlers,
} from "./transport.ts";

export const PIPE_PATH = "/v1/pipe";
/** Frames sent in one upload at most; more wait for the next one. */
const MAX_FRAMES_PER_UPLOAD = 256;
/** A download is abandoned (and the pipe closed) when the server holds it this much longer than promised. */
const DOWNLOAD_GRACE_MS = 15_000;
/** An upload that takes longer than this closes the pipe. */
const UPLOAD_TIMEOUT_MS = 30_000;

export type FetchFunction = typeof globalThis.fetch;

export interface HttpsTransportOptions {
  serverUrl: string;
  fetch?: FetchFunction;
}

/** The pipe's base URL for a server base URL: http(s)://host[:port][/base]/v1/pipe. */
export function pipeUrl(serverUrl: string): string {
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch (cause) {
    throw new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, `not a server URL: ${serverUrl}`, { cause });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new RemessengerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, `server URL must be http(s): ${serverUrl}`);
  }
  url.pathname = url.pathname.replace(/\/+$/, "") + PIPE_PATH;
  url.search = "";
  url.hash = "";
  return url.toString();
}

export function httpsTransportFactory(options: HttpsTransportOptions): TransportFactory {
  const base = pipeUrl(options.serverUrl);
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  return { kind: "https", create: (handlers) => new HttpsTransport(base, handlers, fetchImpl) };
}

type Phase = "new" | "connecting" | "open" | "closed";

export class HttpsTransport implements Transport {
  readonly kind = "https";
  private readonly base: string;
  private readonly handlers: TransportHandlers;
  private readonly fetch: FetchFunction;
  private phase: Phase = "new";
  private reason: TransportCloseReason | undefined;
  private pipeId = "";
  private pollWaitMs = 20_000;
  private outgoing: Uint8Array[] = [];
  private outgoingBytes = 0;
  private inFlightBytes = 0;
  private isUploading = false;
  /** Aborts every request of this pipe when it closes. */
  private readonly lifetime = new AbortController();

  constructor(base: string, handlers: TransportHandlers, fetchImpl: FetchFunction) {
    this.base = base;
    this.handlers = handlers;
    this.fetch = fetchImpl;
  }

  get bufferedAmount(): number {
    return this.outgoingBytes + this.inFlightBytes;
  }

  get closeReason(): TransportCloseReason | undefined {
    return this.reason;
  }

  async connect({ signal, timeoutMs }: TransportConnectOptions): Promise<void> {
    if (this.phase !== "new") throw new Error("an HttpsTransport connects once");
    if (signal.aborted) throw abortReason(signal);
    this.phase = "connecting";
    const limit = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs), this.lifetime.signal]);
    let opened: PipeOpened;
    try {
      const response = await this.fetch(this.base, { method: "POST", signal: limit, cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status} ${await safeText(response)}`.trim());
      opened = PipeOpened.decode(new Uint8Array(await response.arrayBuffer()));
    } catch (cause) {
      this.phase = "closed";
      this.reason = { code: CLOSE_NORMAL, reason: "connect failed", isLocal: true };
      if (signal.aborted) throw abortReason(signal);
      if (cause instanceof DOMException && cause.name === "TimeoutError") {
        throw new RemessengerError(
          ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED,
          `no HTTPS pipe at ${this.base} within ${timeoutMs} ms`,
        );
      }
      throw new RemessengerError(
        ErrorCode.ERROR_CODE_UNAVAILABLE,
        `cannot open an HTTPS pipe at ${this.base}: ${errorText(cause)}`,
        {
          cause,
        },
      );
    }
    this.pipeId = opened.pipeId;
    if (opened.pollWaitMs > 0) this.pollWaitMs = opened.pollWaitMs;
    this.phase = "open";
    void this.downloadLoop();
  }

  send(frame: Uint8Array): void {
    if (this.phase !== "open") {
      throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "the HTTPS pipe is not open");
    }
    this.outgoing.push(frame);
    this.outgoingBytes += frame.length;
    // Frames sent in one turn share one upload.
    if (!this.isUploading) {
      this.isUploading = true;
      queueMicrotask(() => void this.uploadLoop());
    }
  }

  close(code: number, reason: string): void {
    if (this.phase !== "open") return;
    const pipe = `${this.base}/${this.pipeId}`;
    this.finish({ code, reason, isLocal: true });
    // Tell the server at once rather than let the pipe idle out; nobody waits for the answer.
    this.fetch(pipe, { method: "DELETE", cache: "no-store" }).then(
      (response) => response.body?.cancel(),
      () => undefined,
    );
  }

  private async uploadLoop(): Promise<void> {
    try {
      while (this.phase === "open" && this.outgoing.length > 0) {
        const frames = this.outgoing.splice(0, MAX_FRAMES_PER_UPLOAD);
        const size = frames.reduce((n, f) => n + f.length, 0);
        this.outgoingBytes -= size;
        this.inFlightBytes = size;
        const response = await this.fetch(`${this.base}/${this.pipeId}/up`, {
          method: "POST",
          body: PipeFrames.encode({
            frames,
            closed: false,
            closeCode: 0,
            closeReason: "",
          }).finish(),
          headers: { "content-type": "application/x-protobuf" },
          signal: AbortSignal.any([this.lifetime.signal, AbortSignal.timeout(UPLOAD_TIMEOUT_MS)]),
          cache: "no-store",
        });
        this.inFlightBytes = 0;
        await response.body?.cancel();
        if (!response.ok) {
          this.fail(`upload answered HTTP ${response.status}`);
          return;
        }
      }
    } catch (cause) {
      this.fail(`upload failed: ${errorText(cause)}`);
    } finally {
      this.isUploading = false;
    }
  }

  private async downloadLoop(): Promise<void> {
    try {
      while (this.phase === "open") {
        const response = await this.fetch(`${this.base}/${this.pipeId}/down`, {
          method: "GET",
          signal: AbortSignal.any([this.lifetime.signal, AbortSignal.timeout(this.pollWaitMs + DOWNLOAD_GRACE_MS)]),
          cache: "no-store",
        });
        if (!response.ok) {
          await response.body?.cancel();
          this.fail(`download answered HTTP ${response.status}`);
          return;
        }
        const batch = PipeFrames.decode(new Uint8Array(await response.arrayBuffer()));
        for (const frame of batch.frames) {
          if (this.phase !== "open") return;
          if (frame.length > MAX_FRAME_BYTES) {
            this.close(
              CLOSE_MESSAGE_TOO_BIG,
              `the server sent a frame of ${frame.length} bytes (limit ${MAX_FRAME_BYTES})`,
            );
            return;
          }
          this.handlers.onFrame(frame);
        }
        if (batch.closed) {
          this.finish({
            code: batch.closeCode || CLOSE_NORMAL,
            reason: batch.closeReason || "closed by the server",
            isLocal: false,
          });
          return;
        }
      }
    } catch (cause) {
      this.fail(`download failed: ${errorText(cause)}`);
    }
  }

  private fail(reason: string): void {
    if (this.phase !== "open") return;
    this.finish({ code: CLOSE_ABNORMAL, reason, isLocal: false });
  }

  private finish(reason: TransportCloseReason): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    this.reason = reason;
    this.lifetime.abort(new Error(reason.reason));
    this.handlers.onClose(reason);
  }
}

async function safeText(response: Response): Promise<string> {
  try {
    return (await response.text()).slice(0, 200).trim();
  } catch {
    return "";
  }
}
