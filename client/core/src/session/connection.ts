/**
 * One logged-out-or-in connection over one Transport: waits for the server's
 * hello, correlates requests with responses, and hands pushes upward.
 *
 * Invariants:
 * - The first server frame must be `hello`; anything else closes the pipe.
 * - Each request waits with a deadline and an optional AbortSignal, and
 *   settles exactly once: response, error frame, deadline, abort, or close.
 * - At most `maxPendingRequests` requests wait at once, and nothing is queued
 *   while the transport holds more than `maxBufferedBytes` (backpressure):
 *   the request waits for the buffer to drain, within its deadline.
 * - A frame that does not decode is counted; too many close the pipe.
 */
import {
  RemessengerError,
  errorCodeName,
  errorFromDetail,
  type ClientRequest,
  FrameError,
  type ServerBody,
  decodeServerFrame,
  encodeClientFrame,
  ErrorCode,
  type Hello,
  type ServerPush,
} from "@remessenger/protocol";
import {
  CLOSE_NORMAL,
  CLOSE_PROTOCOL_ERROR,
  type Transport,
  type TransportCloseReason,
  type TransportFactory,
} from "../connection/transport.ts";
import { type Clock, abortReason, deadline, pause, raceAbort } from "../runtime/clock.ts";
import type { Logger } from "../runtime/logger.ts";
import { RequestTracker } from "./request-tracker.ts";

export type RequestKind = ClientRequest["$case"];
export type RequestValue<K extends RequestKind> = Extract<ClientRequest, { $case: K }>["value"];
/** Every request kind is answered by the server body case of the same name. */
export type ResponseValue<K extends RequestKind> = Extract<ServerBody, { $case: K }>["value"];

export const DEFAULT_MAX_PENDING_REQUESTS = 1024;
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;
/** Undecodable frames tolerated before the connection is given up. */
export const MAX_BAD_SERVER_FRAMES = 8;
/** How often a request waiting on a full send buffer looks again. */
const BUFFER_POLL_MS = 10;

export interface RequestOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface ConnectionOptions {
  transports: TransportFactory;
  clock: Clock;
  logger: Logger;
  /** Pushes (request id 0) in arrival order. */
  onPush(push: ServerPush): void;
  /** Called once when the pipe closed, after pending requests were rejected. */
  onClose(reason: TransportCloseReason): void;
  maxPendingRequests?: number;
  maxBufferedBytes?: number;
}

interface Pending {
  kind: RequestKind;
  resolve(body: ServerBody): void;
  reject(error: Error): void;
}

export class Connection {
  private readonly options: ConnectionOptions;
  private readonly transport: Transport;
  private readonly pending: RequestTracker<Pending>;
  private readonly maxBufferedBytes: number;
  private readonly helloWaiter = Promise.withResolvers<Hello>();
  private hasHello = false;
  private badFrames = 0;
  private lastFrameAtMs: number;

  private constructor(options: ConnectionOptions) {
    this.options = options;
    this.pending = new RequestTracker(options.maxPendingRequests ?? DEFAULT_MAX_PENDING_REQUESTS);
    this.maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.lastFrameAtMs = options.clock.nowMs();
    this.transport = options.transports.create({
      onFrame: (bytes) => {
        this.onFrame(bytes);
      },
      onClose: (reason) => {
        this.onTransportClose(reason);
      },
    });
    // Nobody may be waiting for the hello when the pipe fails early; that is fine.
    this.helloWaiter.promise.catch(() => undefined);
  }

  /** Opens the pipe and waits for the server's hello, within `timeoutMs`. */
  static async open(
    options: ConnectionOptions,
    wait: { signal: AbortSignal; timeoutMs: number },
  ): Promise<{ connection: Connection; hello: Hello }> {
    const connection = new Connection(options);
    const limit = deadline(options.clock, wait.timeoutMs, "connecting", wait.signal);
    try {
      await connection.transport.connect({ signal: limit.signal, timeoutMs: wait.timeoutMs });
      const hello = await raceAbort(connection.helloWaiter.promise, limit.signal);
      return { connection, hello };
    } catch (error) {
      connection.close(CLOSE_NORMAL, "connect abandoned");
      throw error;
    } finally {
      limit.dispose();
    }
  }

  get kind(): Transport["kind"] {
    return this.transport.kind;
  }

  get isOpen(): boolean {
    return this.transport.closeReason === undefined;
  }

  get closeReason(): TransportCloseReason | undefined {
    return this.transport.closeReason;
  }

  /** Sends a request and waits for its answer; an error frame rejects with its RemessengerError. */
  async request<K extends RequestKind>(
    kind: K,
    value: RequestValue<K>,
    options: RequestOptions,
  ): Promise<ResponseValue<K>> {
    const limit = deadline(this.options.clock, options.timeoutMs, `${kind} request`, options.signal);
    try {
      await this.waitForRoom(limit.signal);
      const answer = Promise.withResolvers<ServerBody>();
      const id = this.pending.add({ kind, resolve: answer.resolve, reject: answer.reject });
      try {
        this.transport.send(encodeClientFrame({ requestId: id, request: { $case: kind, value } as ClientRequest }));
      } catch (error) {
        this.pending.take(id);
        throw error;
      }
      const onAbort = (): void => {
        // The answer may still come; it will find no one waiting and be dropped.
        this.pending.take(id)?.reject(abortReason(limit.signal));
      };
      limit.signal.addEventListener("abort", onAbort, { once: true });
      try {
        const body = await answer.promise;
        return body.value as ResponseValue<K>;
      } finally {
        limit.signal.removeEventListener("abort", onAbort);
      }
    } finally {
      limit.dispose();
    }
  }

  /** Sends a request with id 0: no answer on success (acks). Throws if the pipe is closed. */
  notify<K extends RequestKind>(kind: K, value: RequestValue<K>): void {
    this.transport.send(encodeClientFrame({ requestId: 0, request: { $case: kind, value } as ClientRequest }));
  }

  close(code: number, reason: string): void {
    this.transport.close(code, reason);
  }

  private async waitForRoom(signal: AbortSignal): Promise<void> {
    while (!this.pending.hasRoom || this.transport.bufferedAmount > this.maxBufferedBytes) {
      if (signal.aborted) throw abortReason(signal);
      if (!this.isOpen) break; // send() will report the closed pipe
      await pause(this.options.clock, BUFFER_POLL_MS, signal);
    }
    if (signal.aborted) throw abortReason(signal);
  }

  /**
   * How long the server has been silent while this side waits for an answer
   * (0 when nothing is outstanding): a path that swallows traffic shows here
   * long before the next keep-alive ping would notice.
   */
  quietWhileWaitingMs(nowMs: number): number {
    return this.pending.size === 0 ? 0 : Math.max(0, nowMs - this.lastFrameAtMs);
  }

  private onFrame(bytes: Uint8Array): void {
    this.lastFrameAtMs = this.options.clock.nowMs();
    let frame;
    try {
      frame = decodeServerFrame(bytes);
    } catch (error) {
      this.onBadFrame(error);
      return;
    }
    const { requestId, body } = frame;
    if (!this.hasHello) {
      if (body.$case !== "hello") {
        this.close(CLOSE_PROTOCOL_ERROR, `expected hello first, got ${body.$case}`);
        return;
      }
      this.hasHello = true;
      this.helloWaiter.resolve(body.value);
      return;
    }
    if (body.$case === "hello") {
      this.options.logger.warn({ transport: this.kind }, "server sent a second hello; ignored");
      return;
    }
    if (requestId === 0) {
      if (body.$case === "push") this.options.onPush(body.value);
      else if (body.$case === "error") {
        // An error for a request that wanted no answer (an ack): nothing waits for it.
        this.options.logger.warn(
          { code: errorCodeName(body.value.code), reason: body.value.message },
          "server reported an error for an unanswered request",
        );
      } else this.options.logger.warn({ body: body.$case }, "response without a request id; ignored");
      return;
    }
    const waiter = this.pending.take(requestId);
    if (waiter === undefined) {
      // Its request timed out or was aborted already.
      this.options.logger.debug({ requestId, body: body.$case }, "late answer dropped");
      return;
    }
    if (body.$case === "error") {
      waiter.reject(errorFromDetail(body.value));
    } else if (body.$case !== waiter.kind) {
      waiter.reject(new RemessengerError(ErrorCode.ERROR_CODE_BAD_FRAME, `asked ${waiter.kind}, got ${body.$case}`));
    } else {
      waiter.resolve(body);
    }
  }

  private onBadFrame(error: unknown): void {
    this.badFrames += 1;
    const requestId = error instanceof FrameError ? error.requestId : 0;
    const waiter = requestId === 0 ? undefined : this.pending.take(requestId);
    const failure = error instanceof Error ? error : new Error(String(error));
    if (waiter !== undefined) waiter.reject(failure);
    this.options.logger.warn({ reason: failure.message, badFrames: this.badFrames }, "undecodable server frame");
    if (this.badFrames >= MAX_BAD_SERVER_FRAMES) this.close(CLOSE_PROTOCOL_ERROR, "too many undecodable frames");
  }

  private onTransportClose(reason: TransportCloseReason): void {
    const error = new RemessengerError(
      ErrorCode.ERROR_CODE_UNAVAILABLE,
      `connection closed: ${reason.reason} (${reason.code})`,
    );
    this.helloWaiter.reject(error);
    for (const waiter of this.pending.takeAll()) waiter.reject(error);
    this.options.onClose(reason);
  }
}
