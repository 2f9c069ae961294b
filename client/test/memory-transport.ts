/**
 * An in-memory Transport for unit tests of the session's shell: the test
 * plays the server side frame by frame (no sockets, no timers of its own).
 * End-to-end suites use the real server instead.
 */
import type {
  Transport,
  TransportCloseReason,
  TransportConnectOptions,
  TransportFactory,
  TransportHandlers,
} from "@remessenger/client-core";
import {
  type ClientRequestFrame,
  decodeClientFrame,
  encodeServerFrame,
  ErrorCode,
  type ServerFrame,
  RemessengerError,
} from "@remessenger/protocol";

export class MemoryPipe implements Transport {
  readonly kind = "websocket";
  /** Frames the client sent, decoded. */
  readonly received: ClientRequestFrame[] = [];
  bufferedAmount = 0;
  closeReason: TransportCloseReason | undefined;
  private readonly handlers: TransportHandlers;
  private readonly onClientFrame: (frame: ClientRequestFrame, pipe: MemoryPipe) => void;
  private readonly refuseWith: string | undefined;
  private readonly onOpen: (pipe: MemoryPipe) => void;
  private isOpen = false;

  constructor(
    handlers: TransportHandlers,
    onClientFrame: (frame: ClientRequestFrame, pipe: MemoryPipe) => void,
    onOpen: (pipe: MemoryPipe) => void,
    refuseWith: string | undefined,
  ) {
    this.handlers = handlers;
    this.onClientFrame = onClientFrame;
    this.onOpen = onOpen;
    this.refuseWith = refuseWith;
  }

  connect(options: TransportConnectOptions): Promise<void> {
    if (options.signal.aborted) return Promise.reject(new Error("aborted"));
    if (this.refuseWith !== undefined) {
      return Promise.reject(new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, this.refuseWith));
    }
    this.isOpen = true;
    this.onOpen(this);
    return Promise.resolve();
  }

  send(bytes: Uint8Array): void {
    if (!this.isOpen) throw new RemessengerError(ErrorCode.ERROR_CODE_UNAVAILABLE, "closed");
    const frame = decodeClientFrame(bytes);
    this.received.push(frame);
    this.onClientFrame(frame, this);
  }

  close(code: number, reason: string): void {
    this.finish({ code, reason, isLocal: true });
  }

  /** The server side sends a frame. */
  push(frame: ServerFrame): void {
    if (this.isOpen) this.handlers.onFrame(encodeServerFrame(frame));
  }

  /** The server side sends raw bytes (garbage, for bad-frame tests). */
  pushBytes(bytes: Uint8Array): void {
    if (this.isOpen) this.handlers.onFrame(bytes);
  }

  /** The server side drops the connection. */
  drop(reason = "dropped"): void {
    this.finish({ code: 1006, reason, isLocal: false });
  }

  get isClosed(): boolean {
    return this.closeReason !== undefined;
  }

  private finish(reason: TransportCloseReason): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.closeReason = reason;
    this.handlers.onClose(reason);
  }
}

export interface MemoryTransports extends TransportFactory {
  readonly pipes: MemoryPipe[];
  /** Further connects fail with this reason (undefined: they succeed). */
  refuseWith: string | undefined;
}

export function memoryTransports(
  onClientFrame: (frame: ClientRequestFrame, pipe: MemoryPipe) => void = () => undefined,
  onOpen: (pipe: MemoryPipe) => void = () => undefined,
): MemoryTransports {
  const factory: MemoryTransports = {
    kind: "websocket",
    pipes: [],
    refuseWith: undefined,
    create(handlers) {
      const pipe = new MemoryPipe(handlers, onClientFrame, onOpen, factory.refuseWith);
      factory.pipes.push(pipe);
      return pipe;
    },
  };
  return factory;
}
