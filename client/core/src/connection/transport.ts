/**
 * The Transport port: a dumb pipe of frames between the client and the server.
 * It moves opaque byte frames and reports when it closes; everything that
 * makes delivery reliable (request ids, acks, seqs, resume) lives above it, in
 * the session, so swapping pipes loses and duplicates nothing.
 *
 * Contract every adapter keeps:
 * - `connect` settles once: resolves when frames can flow, rejects on abort,
 *   on its deadline, or when the pipe cannot open. A rejected connect leaves
 *   nothing open.
 * - After a successful connect, `onFrame` receives each inbound frame whole
 *   and in order, and `onClose` is called exactly once, whoever closed.
 * - `send` never blocks; callers watch `bufferedAmount` for backpressure.
 */

/** The pipes the client can speak (one adapter file each under transport/). */
export type TransportKind = "websocket" | "https" | "doh" | "dns";

/** Why a pipe closed. */
export interface TransportCloseReason {
  /** WebSocket-style close code (1000 normal, 1006 dropped, 1008 policy, 1009 too big). */
  code: number;
  /** Human-readable detail for logs and the connection state. */
  reason: string;
  /** True when this side closed it (`close()` or a failed connect). */
  isLocal: boolean;
}

export interface TransportHandlers {
  onFrame(frame: Uint8Array): void;
  onClose(reason: TransportCloseReason): void;
}

export interface TransportConnectOptions {
  signal: AbortSignal;
  /** The connect fails if the pipe is not open within this time. */
  timeoutMs: number;
}

export interface Transport {
  readonly kind: TransportKind;
  connect(options: TransportConnectOptions): Promise<void>;
  /** Queues one frame; throws if the pipe is not open. */
  send(frame: Uint8Array): void;
  /** Bytes queued but not yet handed to the network. */
  readonly bufferedAmount: number;
  /** Closes the pipe (idempotent); `onClose` follows with `isLocal: true`. */
  close(code: number, reason: string): void;
  /** Set once the pipe closed. */
  readonly closeReason: TransportCloseReason | undefined;
}

/** Makes a fresh, unconnected transport of one kind for each connection attempt. */
export interface TransportFactory {
  readonly kind: TransportKind;
  create(handlers: TransportHandlers): Transport;
}

/** Close codes the client uses. */
export const CLOSE_NORMAL = 1000;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_UNSUPPORTED_DATA = 1003;
export const CLOSE_ABNORMAL = 1006;
export const CLOSE_MESSAGE_TOO_BIG = 1009;
